"""The simulation itself: read the inputs, train in memory, replay the held-out period through
the three policies and the team model, once per seed; returns the report and the PNGs, writes
nothing."""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from serving.review.simulate.analysis import (
    CATCH_TARGETS,
    NOT_STOPPABLE_SCENARIOS,
    SURGE_FACTOR,
    SWEEP_QUANTILES,
    equal_at,
    equal_catch,
    low_ranked,
    riskgate_frontier,
    rule_amount_for_capacity,
    rule_frontier,
    stoppable_from_scenario,
    stoppable_note,
    surge_days,
    surge_drift,
)
from serving.review.simulate.report import (
    POLICIES,
    POLICY_TITLES,
    _plot,
    frontier_plot,
    targets,
)
from serving.review.simulate.scenarios import (
    MAINTENANCE_HOURS,
    Scenario,
    busiest_day,
    simulation_config,
)
from serving.review.simulate.seeds import aggregate
from serving.review.team import (
    DAY_S,
    HOUR_S,
    STOPPABLE,
    Absence,
    Shift,
    TeamConfig,
    replay,
)

DEFAULT_MODEL_SEED = 42  # training.config.TrainConfig's


class InputError(Exception):
    """Bad input: reported as `error: ...` with exit status 2, and nothing is written."""


def _team(args: argparse.Namespace, seed: int) -> TeamConfig:
    try:
        lo_s, hi_s = str(args.day_shift).split("-")
        lo, hi = float(lo_s), float(hi_s)
    except ValueError:
        raise InputError(
            f"--day-shift {args.day_shift!r}: use START-END hours, e.g. 8-20"
        ) from None
    try:
        shifts: tuple[Shift, ...] = (Shift(lo, hi, args.reviewers),)
        if lo != hi % 24:
            shifts += (Shift(hi, lo, args.night_reviewers),)
        return TeamConfig(
            shifts=shifts,
            handling_median_min=args.handling_median,
            handling_sigma=args.handling_sigma,
            accuracy=args.accuracy,
            sla_min=args.sla,
            seed=seed,
        )
    except ValueError as exc:
        raise InputError(f"review team: {exc}") from None


def _load(
    args: argparse.Namespace, scenario: Scenario, data_seed_offset: int, say: Any
) -> tuple[pd.DataFrame, str, int | None]:
    """(frame, where it came from, the simulator's seed or None for --data)."""
    from data.schema import ValidationError

    if args.data is None:
        from data.simulator import SimulationConfig, simulate

        base = SimulationConfig()
        cfg = simulation_config(replace(base, seed=base.seed + data_seed_offset), scenario)
        say(f"simulating the sample ({cfg.rows:,} payments, {cfg.days} days, seed {cfg.seed})")
        source = (
            f"simulated sample (rows {cfg.rows:,}, days {cfg.days}, seed {cfg.seed}, "
            f"surge days {list(cfg.surges)} at {cfg.surge_multiplier:g}x)"
        )
        return simulate(cfg), source, cfg.seed
    from data.load import load

    try:
        frame = load(args.data, args.mapping)
    except ValidationError as exc:
        raise InputError(f"invalid input\n{exc}") from None
    return frame, str(args.data), None


def _check_labels(frame: pd.DataFrame, test: np.ndarray) -> None:
    if "is_fraud" not in frame.columns or frame["is_fraud"].notna().sum() == 0:
        raise InputError("the data has no fraud labels (is_fraud): nothing to evaluate")
    missing = int(frame.loc[test, "is_fraud"].isna().sum())
    if missing:
        raise InputError(
            f"{missing:,} payments in the held-out period have no is_fraud label: the simulation "
            "needs every held-out payment's outcome"
        )


def _check_args(args: argparse.Namespace) -> Scenario:
    _team(args, args.seed)
    if not 0 < args.test_share < 0.8:
        raise InputError(f"--test-share must be in (0, 0.8), got {args.test_share}")
    if not 0 < args.target_utilisation <= 1:
        raise InputError(f"--target-utilisation must be in (0, 1], got {args.target_utilisation}")
    if args.capacity_per_hour is not None and not args.capacity_per_hour > 0:
        raise InputError(f"--capacity-per-hour must be > 0, got {args.capacity_per_hour}")
    if args.search_trials < 1:
        raise InputError(f"--search-trials must be >= 1, got {args.search_trials}")
    if not args.search_budget > 0:
        raise InputError(f"--search-budget must be > 0, got {args.search_budget}")
    if not 1 <= args.seeds <= 20:
        raise InputError(f"--seeds must be in 1..20, got {args.seeds}")
    if args.max_shed_loss is not None and not args.max_shed_loss >= 0:
        raise InputError(f"--max-shed-loss must be >= 0, got {args.max_shed_loss}")
    try:
        scenario = Scenario(args.scenario)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if scenario.surge5 and args.data is not None:
        raise InputError(
            f"--scenario {scenario.name} makes a 5x promotion day in the simulated sample: it "
            "cannot be used with --data (maintenance can)"
        )
    return scenario


@dataclass
class _Run:
    report: dict[str, Any]
    queues: dict[str, Any]
    period: tuple[float, float]
    surges: list[pd.Timestamp]
    sla_min: float
    frontier: dict[str, Any]


def run(args: argparse.Namespace, say: Any) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Everything but the writing: (report, {file name: PNG bytes}). Raises InputError for bad
    input. With --seeds N, the data seed (simulated sample) and the model seed both move by
    0..N-1 and every figure becomes {"median", "worst", "per_seed"}."""
    scenario = _check_args(args)
    runs: list[_Run] = []
    for i in range(args.seeds):
        if args.seeds > 1:
            say(f"seed {i + 1} of {args.seeds}")
        runs.append(_run_one(args, scenario, i, say))
    say("plotting")
    first = runs[0]
    pngs = {
        "queue_hold.png": _plot(first.queues, first.period, first.surges, first.sla_min),
        "equal_catch.png": frontier_plot([r.frontier for r in runs]),
    }
    if len(runs) == 1:
        return first.report, pngs
    return aggregate([r.report for r in runs]), pngs


def _run_one(args: argparse.Namespace, scenario: Scenario, i: int, say: Any) -> _Run:
    from data.load import parse_duration
    from data.progress import progress_bar
    from serving.review.team import capacity_aware_decisions, to_seconds
    from serving.scoring.capacity import CapacityConfig
    from training import thresholds as th
    from training.baselines import RULE_SIGNALS, rule_flags
    from training.config import SearchSettings, TrainConfig
    from training.pipeline import score_table, train
    from training.split import part_of, plan

    try:
        delay = parse_duration(args.label_delay)
    except ValueError as exc:
        raise InputError(f"--label-delay: {exc}") from None
    model_seed = DEFAULT_MODEL_SEED + i
    config = TrainConfig(
        test_share=args.test_share,
        label_delay_days=delay / pd.Timedelta(days=1),
        search=SearchSettings(trials=args.search_trials, budget_seconds=args.search_budget),
        seed=model_seed,
    )

    frame, source, data_seed = _load(args, scenario, i, say)
    frame = frame.reset_index(drop=True)
    if "is_fraud" not in frame.columns or frame["is_fraud"].notna().sum() == 0:
        raise InputError("the data has no fraud labels (is_fraud): nothing to evaluate")
    try:
        split = plan(
            frame["timestamp"],
            delay,
            test_share=config.test_share,
            valid_share=config.valid_share,
        )
    except ValueError as exc:
        raise InputError(str(exc)) from None
    parts = part_of(frame["timestamp"], split)
    _check_labels(frame, parts == "test")

    bar = progress_bar(total=config.lightgbm.n_estimators, desc="boosting", unit="tree")

    def rounds(k: int, ap: float) -> None:
        bar.update(k - bar.n)
        bar.set_postfix_str(f"valid AP {ap:.3f}")

    try:
        result = train(frame, config, progress=say, round_progress=rounds)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    finally:
        bar.close()
    model = result.model
    parts = result.parts
    te, tr = parts == "test", parts == "train"

    amount = frame["amount"].to_numpy(dtype=np.float64)
    stoppable_all, has_scenario = stoppable_from_scenario(frame)
    table = result.features
    signals_all = {s: table[s].to_numpy() for s in RULE_SIGNALS if s in table}

    # the held-out period, in time order
    idx = np.flatnonzero(te)
    idx = idx[np.argsort(frame["timestamp"].to_numpy()[idx], kind="stable")]
    held = frame.loc[idx].reset_index(drop=True)
    p = score_table(model, table.loc[idx])
    times = to_seconds(held["timestamp"])
    fraud = held["is_fraud"].to_numpy(dtype=np.float64) == 1
    am = held["amount"].to_numpy(dtype=np.float64)
    stoppable = stoppable_all[idx]
    stop_amount = np.where(fraud & stoppable, am, 0.0)
    total_stop = float(stop_amount.sum())
    surges = [d for d in surge_days(frame["timestamp"]) if split.test_start <= d < split.test_end]
    surge_mask = held["timestamp"].dt.floor("D").isin(surges).to_numpy()
    period = (
        float(to_seconds(pd.Series([split.test_start]))[0]),
        float(to_seconds(pd.Series([split.test_end]))[0]),
    )

    # the team, with the scenario's maintenance window on the held-out period's busiest day
    team = _team(args, args.seed + i)
    scenario_day = busiest_day(held["timestamp"]) if len(held) else None
    maintenance_text = None
    if scenario.maintenance and scenario_day is not None:
        away = team.shifts[0].reviewers - 1
        lo, hi = MAINTENANCE_HOURS
        day_s = float(to_seconds(pd.Series([scenario_day]))[0])
        if away >= 1:
            team = replace(
                team, absences=(Absence(day_s + lo * HOUR_S, day_s + hi * HOUR_S, away, 0),)
            )
            maintenance_text = (
                f"{scenario_day:%Y-%m-%d} {lo:02.0f}:00-{hi:02.0f}:00 UTC, {away} of "
                f"{team.shifts[0].reviewers} day-shift reviewers away"
            )
        else:
            maintenance_text = "none: the day shift has one reviewer already"
    eval_frame = pd.DataFrame(
        {"time": times, "is_fraud": fraud, "amount": am, "priority": p * am, STOPPABLE: stoppable}
    )
    signals = {k: v[idx] for k, v in signals_all.items()}
    say(
        f"held-out period {split.test_start:%Y-%m-%d} .. {split.test_end:%Y-%m-%d}: "
        f"{len(held):,} payments, {int(fraud.sum())} fraud, surge days "
        f"{[f'{d:%Y-%m-%d}' for d in surges]}"
    )

    # the rule policy's X: given, or the most reviews the platform's capacity allows (set on
    # the training period; not fitted to riskgate)
    util = args.target_utilisation
    if args.capacity_per_hour:
        per_day = float(args.capacity_per_hour) * 24.0
    else:
        per_day = team.on_shift_seconds(0.0, DAY_S) / 60.0 / team.mean_handling_min * util
    train_days = max((split.train_end - split.train_start) / pd.Timedelta(days=1), 1.0)
    if args.rule_amount is not None:
        rule_x, rule_q = float(args.rule_amount), None
        rule_text = f"{rule_x:,.2f} (given)"
    else:
        rule_x, rule_q = rule_amount_for_capacity(
            amount[tr], {k: v[tr] for k, v in signals_all.items()}, train_days, per_day
        )
        rule_text = (
            f"{rule_x:,.2f} (percentile p{rule_q * 100:g} of the training period's amounts"
            if rule_q is not None
            else "inf (the location and device signals alone"
        ) + f": the most reviews per day on the training period within capacity, {per_day:.0f})"

    # the three policies
    rules = rule_flags(am, signals, rule_x)
    decisions = {
        "rules": np.where(rules, "review", "approve"),
        "riskgate_fixed": th.apply(p, model.thresholds, am),
    }
    max_review = args.max_review_threshold
    if max_review is None:
        max_review = 50.0 if model.thresholds.review_by == "saving" else 0.2
    cap_cfg = CapacityConfig(
        enabled=True,
        reviews_per_hour=args.capacity_per_hour or 30.0,
        max_review_threshold=max_review,
        max_shed_loss_per_day=args.max_shed_loss,
    )

    def capacity_at(t: float) -> float:
        # what the reviewers on shift clear at the target utilisation, and no more than keeps
        # 95% of the holds within the SLA (M/M/c): one reviewer at 80% would breach it
        return float(team.sla_capacity_per_hour(t, util))

    review_score = model.thresholds.review_score(p, am)
    with progress_bar(total=len(p), desc="capacity-aware", unit="payment") as cbar:

        def tick(done: int) -> None:
            cbar.update(done - cbar.n)

        cap_dec, adjusted, _ = capacity_aware_decisions(
            times,
            p,
            model.thresholds.review,
            model.thresholds.decline,
            cap_cfg,
            None if args.capacity_per_hour else capacity_at,
            progress=tick,
            score=review_score,
            expected_loss=p * am,
        )
    decisions["riskgate_capacity"] = cap_dec

    figures: dict[str, dict[str, Any]] = {}
    queues: dict[str, Any] = {}
    scenario_mask = (
        held["timestamp"].dt.floor("D").eq(scenario_day).to_numpy()
        if scenario_day is not None
        else np.zeros(len(held), dtype=bool)
    )
    for name in progress_bar(POLICIES, desc="review team", unit="policy"):
        figs, queue = replay(
            decisions[name],
            eval_frame,
            team,
            priority_order=name != "rules",
            period=period,
            surge=surge_mask,
        )
        peak = figs.pop("peak_queue_time")
        reviewed = decisions[name] == "review"
        good_reviewed = ~fraud[reviewed]
        hold = queue.cases["hold"].to_numpy(dtype=np.float64)
        on_day = scenario_mask[reviewed]
        figures[name] = {
            **figs,
            "hold_p95_scenario_day_min": _p(hold[good_reviewed & on_day], 95),
            "hold_p99_scenario_day_min": _p(hold[good_reviewed & on_day], 99),
            "sla_breaches_on_scenario_day": float((hold[on_day] > team.sla_min * 60.0).sum()),
            "peak_queue_at": (
                pd.Timestamp(round(peak), unit="s", tz="UTC").isoformat()
                if math.isfinite(peak)
                else None
            ),
        }
        queues[name] = (queue, good_reviewed)
    changed = int((decisions["riskgate_capacity"] != decisions["riskgate_fixed"]).sum())
    shed = (decisions["riskgate_fixed"] == "review") & (decisions["riskgate_capacity"] == "approve")
    extra = shed & fraud & stoppable
    day_of = np.floor(times / DAY_S)
    per_day_extra = pd.Series(am[extra]).groupby(day_of[extra]).sum()
    cap_fig = figures["riskgate_capacity"]
    cap_fig["capacity_adjusted_payments"] = float(adjusted.sum())
    cap_fig["capacity_changed_decisions"] = float(changed)
    cap_fig["reviews_shed"] = float(shed.sum())
    cap_fig["extra_fraud_count"] = float(extra.sum())
    cap_fig["extra_fraud_amount"] = float(am[extra].sum())
    cap_fig["extra_fraud_amount_worst_day"] = (
        float(per_day_extra.max()) if len(per_day_extra) else 0.0
    )
    cap_fig["shed_expected_loss"] = float((p * am)[shed].sum())

    # equal catch: both frontiers on the held-out period, each policy at its best
    front = rule_frontier(am, signals, stop_amount, amount[tr])
    eq_rows, eq_detail = equal_catch(front, review_score, fraud, stoppable, am)
    scen = held["scenario"].to_numpy() if "scenario" in held.columns else None
    for row, det in zip(eq_rows, eq_detail, strict=True):
        target = CATCH_TARGETS.get(row["catch"])
        n = row["rule_reviews"]
        if target is not None and n and row["ratio"] is not None and row["ratio"] > target:
            det["low_ranked"] = low_ranked(
                review_score,
                p,
                fraud,
                stoppable,
                am,
                scen,
                int(target * n),
                row["riskgate_reviews"],
            )
        else:
            det["low_ranked"] = None
    held_or_declined = decisions["riskgate_fixed"] != "approve"
    op_rg_stop = float(stop_amount[held_or_declined].sum())
    op_rule_stop = float(stop_amount[rules].sum())
    rg_curve = riskgate_frontier(review_score, stop_amount)
    operating: dict[str, Any] = {
        "riskgate": {
            "reviews": int((decisions["riskgate_fixed"] == "review").sum()),
            "declines": int((decisions["riskgate_fixed"] == "decline").sum()),
            "stopped_amount": op_rg_stop,
            "catch_share": op_rg_stop / total_stop if total_stop else None,
        },
        "rules": {
            "rule_amount": rule_x,
            "reviews": int(rules.sum()),
            "stopped_amount": op_rule_stop,
            "catch_share": op_rule_stop / total_stop if total_stop else None,
            "capacity_reviews": per_day * len(held["timestamp"].dt.floor("D").unique()),
        },
    }
    # each at the other's operating point: the fewest reviews to stop as much
    ok = front[front["stopped"] >= op_rg_stop - 1e-9 * max(op_rg_stop, 1.0)]
    operating["rule_reviews_at_riskgate_catch"] = int(ok["reviews"].min()) if len(ok) else None
    operating["riskgate_reviews_at_rules_catch"] = int(
        np.searchsorted(rg_curve, op_rule_stop - 1e-9 * max(op_rule_stop, 1.0), side="left")
    )

    # the earlier comparison at the rule policy's X (all-fraud variants, expected-loss ranking)
    equal = equal_at(rules, fraud, stoppable, am, review_score, p)
    sweep = []
    for q in SWEEP_QUANTILES:
        x = math.inf if q is None else float(np.quantile(amount[tr], q))
        label = "inf (signals only)" if q is None else f"{x:,.0f} (p{q * 100:g})"
        flags = rule_flags(am, signals, x)
        sweep.append(
            {"label": label, "amount": x, **equal_at(flags, fraud, stoppable, am, review_score, p)}
        )

    drift: list[dict[str, Any]] | None = None
    drift_note = "no surge day in the held-out period"
    if surges:
        feats = list(model.features)
        surge_rows = idx[surge_mask]
        try:
            drift = surge_drift(
                table.loc[tr, feats],
                score_table(model, table.loc[tr]),
                table.loc[surge_rows, feats],
                p[surge_mask],
            )
            drift_note = (
                "training.drift (profile, psi_report) not available yet"
                if drift is None
                else "PSI of the surge days against the training period"
            )
        except Exception as exc:  # an optional section must not sink the report
            drift_note = f"training.drift failed: {type(exc).__name__}: {exc}"
            say(f"warning: surge drift not computed ({drift_note})")

    capacity_text = (
        f"{args.capacity_per_hour:g} reviews per hour"
        if args.capacity_per_hour
        else f"capacity = the lower of reviewers on shift x 60 / {team.mean_handling_min:.2f} min "
        f"x {util:g} and the rate at which 95% of the holds stay within the SLA (M/M/c, Erlang "
        f"C): {capacity_at(12 * 3600.0):.1f}/h with 2 reviewers, {team.sla_rate_per_hour(1):.1f}"
        "/h with 1"
    )
    sla_target = {
        "target": "p95 hold of reviewed good payments <= SLA, whole period and scenario day",
        "sla_minutes": team.sla_min,
        **{name: _worst_p95(figures[name]) for name in POLICIES},
    }
    report: dict[str, Any] = {
        "setup": {
            "data": source,
            "data_seed": data_seed,
            "model_seed": model_seed,
            "scenario": scenario.name,
            "scenario_text": scenario.describe(),
            "scenario_day": f"{scenario_day:%Y-%m-%d}" if scenario_day is not None else None,
            "maintenance": maintenance_text,
            "rows": len(frame),
            "train_start": f"{split.train_start:%Y-%m-%d}",
            "train_end": f"{split.train_end:%Y-%m-%d}",
            "valid_start": f"{split.valid_start:%Y-%m-%d}",
            "valid_end": f"{split.valid_end:%Y-%m-%d}",
            "test_start": f"{split.test_start:%Y-%m-%d}",
            "test_end": f"{split.test_end:%Y-%m-%d}",
            "test_payments": len(held),
            "test_fraud": int(fraud.sum()),
            "test_fraud_amount": float(am[fraud].sum()),
            "test_stoppable_fraud_amount": total_stop,
            "scenario_known": has_scenario,
            "test_fraud_not_stoppable": int((fraud & ~stoppable).sum()),
            "test_fraud_not_stoppable_amount": float(am[fraud & ~stoppable].sum()),
            "not_stoppable_scenarios": list(NOT_STOPPABLE_SCENARIOS) if has_scenario else [],
            "stoppable_note": stoppable_note(
                has_scenario,
                int((fraud & ~stoppable).sum()),
                float(am[fraud & ~stoppable].sum()),
                int(fraud.sum()),
                float(am[fraud].sum()),
            ),
            "surge_days": [f"{d:%Y-%m-%d}" for d in surges],
            "surge_rule": f"days with >= {SURGE_FACTOR:g} x the median day's payments",
            "team": team.describe(),
            "team_config": asdict(team),
            "sla_min": team.sla_min,
            "sla_minutes": team.sla_min,
            "seed": args.seed + i,
            "review_threshold": model.thresholds.review,
            "decline_threshold": model.thresholds.decline,
            "rule_amount": rule_x,
            "rule_amount_percentile": rule_q,
            "rule_amount_text": rule_text,
            "capacity_reviews_per_day": per_day,
            "capacity_text": capacity_text,
            "capacity_per_hour": args.capacity_per_hour,
            "target_utilisation": util,
            "max_review_threshold": max_review,
            "max_shed_loss_per_day": args.max_shed_loss,
            "review_by": model.thresholds.review_by,
            "capacity_adjusted_payments": int(adjusted.sum()),
            "capacity_changed_decisions": changed,
            "model_trees": int(model.booster.current_iteration()),
            "policies": POLICY_TITLES,
        },
        "policies": figures,
        "equal_catch": eq_rows,
        "equal_catch_detail": eq_detail,
        "operating_points": operating,
        "equal_amount": equal,
        "rule_amount_sweep": sweep,
        "sla_target": sla_target,
        "surge_drift": drift,
        "surge_drift_note": drift_note,
    }
    report["targets"] = targets(report)
    k_max = int(max(len(p), 1))
    frontier = {
        "riskgate": rg_curve[: k_max + 1] / total_stop if total_stop else rg_curve * 0,
        "rules": front[["reviews", "stopped"]].assign(
            share=front["stopped"] / total_stop if total_stop else 0.0
        ),
        "operating": operating,
        "total": total_stop,
        "levels": eq_rows,
    }
    return _Run(report, queues, period, surges, team.sla_min, frontier)


def _p(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) / 60.0 if len(values) else float("nan")


def _worst_p95(f: dict[str, Any]) -> float:
    """The larger of the whole period's and the scenario day's p95 hold (0 with no holds)."""
    values = [f["hold_p95_min"], f["hold_p95_scenario_day_min"]]
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return max(finite) if finite else 0.0
