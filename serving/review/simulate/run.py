"""The simulation itself: read the inputs, train in memory, replay the held-out period through
the three policies and the team model; returns the report and the PNG, writes nothing."""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict
from typing import Any

import numpy as np
import pandas as pd

from serving.review.simulate.analysis import (
    NOT_STOPPABLE_SCENARIOS,
    SURGE_FACTOR,
    SWEEP_QUANTILES,
    equal_at,
    rule_amount_from_validation,
    stoppable_from_scenario,
    stoppable_note,
    surge_days,
    surge_drift,
)
from serving.review.simulate.report import POLICIES, POLICY_TITLES, _plot, targets
from serving.review.team import (
    STOPPABLE,
    Shift,
    TeamConfig,
    replay,
)


class InputError(Exception):
    """Bad input: reported as `error: ...` with exit status 2, and nothing is written."""


def _team(args: argparse.Namespace) -> TeamConfig:
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
            seed=args.seed,
        )
    except ValueError as exc:
        raise InputError(f"review team: {exc}") from None


def _load(args: argparse.Namespace, say: Any) -> tuple[pd.DataFrame, str]:
    from data.schema import ValidationError

    if args.data is None:
        from data.simulator import SimulationConfig, simulate

        cfg = SimulationConfig()
        say(f"simulating the default sample ({cfg.rows:,} payments, {cfg.days} days)")
        source = (
            f"simulated sample (rows {cfg.rows:,}, days {cfg.days}, seed {cfg.seed}, "
            f"surge days {list(cfg.surges)})"
        )
        return simulate(cfg), source
    from data.load import load

    try:
        frame = load(args.data, args.mapping)
    except ValidationError as exc:
        raise InputError(f"invalid input\n{exc}") from None
    return frame, str(args.data)


def _check_labels(frame: pd.DataFrame, test: np.ndarray) -> None:
    if "is_fraud" not in frame.columns or frame["is_fraud"].notna().sum() == 0:
        raise InputError("the data has no fraud labels (is_fraud): nothing to evaluate")
    missing = int(frame.loc[test, "is_fraud"].isna().sum())
    if missing:
        raise InputError(
            f"{missing:,} payments in the held-out period have no is_fraud label: the simulation "
            "needs every held-out payment's outcome"
        )


def run(args: argparse.Namespace, say: Any) -> tuple[dict[str, Any], bytes]:
    """Everything but the writing: (report, PNG bytes). Raises InputError for bad input."""
    from data.load import parse_duration
    from data.progress import progress_bar
    from serving.review.team import capacity_aware_decisions, to_seconds
    from serving.scoring.capacity import CapacityConfig
    from training import thresholds as th
    from training.baselines import RULE_SIGNALS, rule_flags
    from training.config import SearchSettings, TrainConfig
    from training.pipeline import score_table, train
    from training.split import known_labels, part_of, plan

    team = _team(args)
    if not 0 < args.test_share < 0.8:
        raise InputError(f"--test-share must be in (0, 0.8), got {args.test_share}")
    if not 0 < args.target_utilisation <= 1:
        raise InputError(f"--target-utilisation must be in (0, 1], got {args.target_utilisation}")
    if args.capacity_per_hour is not None and not args.capacity_per_hour > 0:
        raise InputError(f"--capacity-per-hour must be > 0, got {args.capacity_per_hour}")
    try:
        delay = parse_duration(args.label_delay)
    except ValueError as exc:
        raise InputError(f"--label-delay: {exc}") from None
    if args.search_trials < 1:
        raise InputError(f"--search-trials must be >= 1, got {args.search_trials}")
    config = TrainConfig(
        test_share=args.test_share,
        label_delay_days=delay / pd.Timedelta(days=1),
        search=SearchSettings(trials=args.search_trials),
    )

    frame, source = _load(args, say)
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

    def rounds(i: int, ap: float) -> None:
        bar.update(i - bar.n)
        bar.set_postfix_str(f"valid AP {ap:.3f}")

    try:
        result = train(frame, config, progress=say, round_progress=rounds)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    finally:
        bar.close()
    model = result.model
    parts = result.parts
    te, va, tr = parts == "test", parts == "valid", parts == "train"

    amount = frame["amount"].to_numpy(dtype=np.float64)
    stoppable_all, has_scenario = stoppable_from_scenario(frame)
    table = result.features
    signals_all = {s: table[s].to_numpy() for s in RULE_SIGNALS if s in table}
    p_valid = score_table(model, table.loc[va])
    fraud_valid = known_labels(frame, split.valid_known_by)[va].astype(bool)
    if args.rule_amount is not None:
        rule_x, rule_q = float(args.rule_amount), None
        rule_text = f"{rule_x:,.2f} (given)"
    else:
        rule_x, rule_q = rule_amount_from_validation(
            amount[tr],
            amount[va],
            {k: v[va] for k, v in signals_all.items()},
            fraud_valid,
            th.apply(p_valid, model.thresholds, amount[va]) != "approve",
            stoppable_all[va],
        )
        rule_text = (
            f"{rule_x:,.2f} (percentile p{rule_q * 100:g} of the training period's amounts"
            if rule_q is not None
            else "inf (the location and device signals alone"
        ) + ", matched to riskgate's share of the fraud amount a review can stop on validation)"

    # the held-out period, in time order
    idx = np.flatnonzero(te)
    idx = idx[np.argsort(frame["timestamp"].to_numpy()[idx], kind="stable")]
    held = frame.loc[idx].reset_index(drop=True)
    p = score_table(model, table.loc[idx])
    times = to_seconds(held["timestamp"])
    fraud = held["is_fraud"].to_numpy(dtype=np.float64) == 1
    am = held["amount"].to_numpy(dtype=np.float64)
    stoppable = stoppable_all[idx]
    surges = [d for d in surge_days(frame["timestamp"]) if split.test_start <= d < split.test_end]
    surge_mask = held["timestamp"].dt.floor("D").isin(surges).to_numpy()
    period = (
        float(to_seconds(pd.Series([split.test_start]))[0]),
        float(to_seconds(pd.Series([split.test_end]))[0]),
    )
    eval_frame = pd.DataFrame(
        {"time": times, "is_fraud": fraud, "amount": am, "priority": p * am, STOPPABLE: stoppable}
    )
    signals = {k: v[idx] for k, v in signals_all.items()}
    say(
        f"held-out period {split.test_start:%Y-%m-%d} .. {split.test_end:%Y-%m-%d}: "
        f"{len(held):,} payments, {int(fraud.sum())} fraud, surge days "
        f"{[f'{d:%Y-%m-%d}' for d in surges]}"
    )

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
    )
    util = args.target_utilisation

    def capacity_at(t: float) -> float:
        return float(team.capacity_per_hour(t, util))

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
            score=model.thresholds.review_score(p, am),
        )
    decisions["riskgate_capacity"] = cap_dec

    figures: dict[str, dict[str, Any]] = {}
    queues: dict[str, Any] = {}
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
        figures[name] = {
            **figs,
            "peak_queue_at": (
                pd.Timestamp(round(peak), unit="s", tz="UTC").isoformat()
                if math.isfinite(peak)
                else None
            ),
        }
        good_reviewed = ~fraud[decisions[name] == "review"]
        queues[name] = (queue, good_reviewed)
    changed = int((decisions["riskgate_capacity"] != decisions["riskgate_fixed"]).sum())
    figures["riskgate_capacity"]["capacity_adjusted_payments"] = float(adjusted.sum())
    figures["riskgate_capacity"]["capacity_changed_decisions"] = float(changed)

    # review volume at equal fraud amount held for review (fraud a review can stop; all fraud
    # next to it). riskgate takes payments in the order of its own review score (expected
    # saving by default)
    review_score = model.thresholds.review_score(p, am)
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
        else f"capacity = reviewers on shift x 60 / {team.mean_handling_min:.2f} min x {util:g} "
        f"({capacity_at(12 * 3600.0):.1f}/h at noon, {capacity_at(0.0):.1f}/h at midnight)"
    )
    report: dict[str, Any] = {
        "setup": {
            "data": source,
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
            "seed": args.seed,
            "review_threshold": model.thresholds.review,
            "decline_threshold": model.thresholds.decline,
            "rule_amount": rule_x,
            "rule_amount_percentile": rule_q,
            "rule_amount_text": rule_text,
            "capacity_text": capacity_text,
            "capacity_per_hour": args.capacity_per_hour,
            "target_utilisation": util,
            "max_review_threshold": max_review,
            "review_by": model.thresholds.review_by,
            "capacity_adjusted_payments": int(adjusted.sum()),
            "capacity_changed_decisions": changed,
            "model_trees": int(model.booster.current_iteration()),
            "policies": POLICY_TITLES,
        },
        "policies": figures,
        "equal_amount": equal,
        "rule_amount_sweep": sweep,
        "targets": targets(figures, equal, bool(surges)),
        "surge_drift": drift,
        "surge_drift_note": drift_note,
    }
    say("plotting")
    png = _plot(queues, period, surges, team.sla_min)
    return report, png
