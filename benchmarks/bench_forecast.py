"""The wait forecast against the simulator: a surge day and a maintenance window.

The `riskgate simulate` sample (default: 200,000 payments over 90 days, promotion surges on
days 67 and 70) goes through the platform's rule policy (review above X = 349, an IP country
that differs from billing, or a new device: `riskgate simulate`'s "rule policy"), and the
reviewed payments through team.py's review team (2 reviewers 08-20 UTC, 1 at night). For each
replayed day the forecast is made at 00:00 UTC from what the service would know then: the
cases of the 7 days before, the open queue at midnight and the calendar (the surge day as a
3x promotion, the platform's volume multiplier; the maintenance day with nobody reviewing
14:00-16:00). The day is then simulated with the actual arrivals. Per hour: forecast p50/p90
and p90 band vs the simulated p50/p90 hold (held -> decided) of the payments held in that hour.
The target: the simulated p90 inside the band for >= 80% of hours (hours with reviews).

The simulated truth is the simulator's own run: every later arrival of the sample goes on
into the queue after the replayed day, as payments do on a real platform (under priority
order, a low-priority payment held in a backlog waits for every riskier one arriving before
it is reached: the surge day's backlog takes about two days to clear). For comparison the
same forecasts are also checked against a truth cut at the day's midnight (no arrivals after
it, so the day's held payments are never overtaken: shorter waits than the simulation gives;
one line per case, not a target; `--no-midnight` skips it). `--truth-days N` cuts the truth
after N days instead.

    .venv/bin/python benchmarks/bench_forecast.py [--rows 200000] [--runs 200] [--truth-days N]
        [--band 5 95] [--seed 0] [--no-midnight]

The forecast learns how a promotion's reviews grow with its volume from the promotions that
ended in the week before (none before the first surge: elasticity 1 +- 0.5); the second surge
day (calendar: both promotions) shows the learned one, reported but not a target.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import common
import numpy as np
import pandas as pd

from serving.review.forecast import (
    BAND,
    Calendar,
    Event,
    baseline_inflow,
    forecast,
    nowcast_level,
    promotion_elasticity,
    team_for,
)
from serving.review.team import DAY_S, HOUR_S, TeamConfig, simulate_queue, to_seconds

RULE_X = 349.0
TOLERANCE_MIN = 0.5  # a band narrower than this is widened by it on each side


def reviewed(frame: pd.DataFrame) -> pd.DataFrame:
    """The rule policy's reviews: time and priority (amount: money at risk without a model)."""
    from features import batch
    from features.registry import available
    from training.baselines import RULE_SIGNALS, rule_flags

    feats = [f for f in available(frame.columns).features if f.name in RULE_SIGNALS]
    table = batch.compute(frame, feats)
    amount = frame["amount"].to_numpy(dtype=np.float64)
    flags = rule_flags(amount, {s: table[s].to_numpy() for s in RULE_SIGNALS}, RULE_X)
    return pd.DataFrame(
        {"time": to_seconds(frame["timestamp"])[flags], "priority": amount[flags]}
    ).sort_values("time", kind="stable")


def replay_day(
    arrivals: pd.DataFrame,
    day0: float,
    team: TeamConfig,
    cal: Calendar,
    runs: int,
    rolling: bool,
    truths: tuple[int | None, ...] = (None,),
    band: tuple[float, float] = BAND,
    seed: int = 0,
) -> dict[int | None, list[dict[str, Any]]]:
    """Forecast at day0 (00:00 UTC) and the simulated day, hour by hour, against each truth:
    None runs it on every later arrival, N on those of the first N days from day0. The
    forecast's inputs (the open queue at each hour) are the same in all: the queue is causal,
    and the truths differ only after the day."""
    t = arrivals["time"].to_numpy()
    sim_team = team_for(cal.staffing(team), team, day0)
    assert sim_team is not None

    def truth(days: int | None) -> tuple[pd.DataFrame, pd.DataFrame]:
        # from two days before: the queue as the service had it at midnight (same team)
        until = np.inf if days is None else day0 + days * DAY_S
        warm = arrivals[(t >= day0 - 2 * DAY_S) & (t < until)].reset_index(drop=True)
        return warm, simulate_queue(warm, sim_team, True).cases

    warm, c = truth(None)
    waiting = c[(c["time"] < day0) & (c["start"] >= day0)]
    now = datetime.fromtimestamp(day0, tz=UTC)
    # the promotions that ended before the day (none before the first surge: the prior)
    el = promotion_elasticity(t[t < day0], day0, cal)
    base = baseline_inflow(t[(t < day0) & (t >= day0 - 7 * DAY_S)], day0, cal, elasticity=el.mean)
    hist = arrivals["priority"].to_numpy()[(t < day0) & (t >= day0 - 7 * DAY_S)]
    prio = warm["priority"].to_numpy()
    if rolling:  # made at the start of each hour, with what was seen so far: its first hour
        hours = []
        for h in range(24):
            at = day0 + h * 3600.0
            queued = ((c["time"] < at) & (c["start"] >= at)).to_numpy()
            level, level_sd = nowcast_level(
                t[t < at], at, base, cal, elasticity=el.mean, elasticity_sd=el.sd
            )
            hours.append(
                forecast(
                    datetime.fromtimestamp(at, tz=UTC),
                    team,
                    cal,
                    base,
                    prio[queued].tolist(),
                    hist[-1000:].tolist(),
                    hours=1,
                    runs=runs,
                    level=level,
                    elasticity=el,
                    level_sd=level_sd,
                    band=band,
                    seed=seed,
                )[0]
            )
    else:
        level, level_sd = nowcast_level(
            t[t < day0], day0, base, cal, elasticity=el.mean, elasticity_sd=el.sd
        )
        hours = forecast(
            now,
            team,
            cal,
            base,
            prio[waiting.index].tolist(),
            hist[-1000:].tolist(),
            runs=runs,
            level=level,
            elasticity=el,
            level_sd=level_sd,
            band=band,
            seed=seed,
        )
    return {days: compare(hours, c if days is None else truth(days)[1], day0) for days in truths}


def compare(hours: list[Any], c: pd.DataFrame, day0: float) -> list[dict[str, Any]]:
    """The forecast's hours beside the simulated holds of the cases held in each hour."""
    day = c[(c["time"] >= day0) & (c["time"] < day0 + DAY_S)]
    hour_of = ((day["time"] - day0) // HOUR_S).astype(int)
    rows = []
    for h, fc in enumerate(hours):
        holds = day["hold"][hour_of == h].to_numpy() / 60.0
        actual_p90 = float(np.percentile(holds, 90)) if len(holds) else None
        band = fc.p90_band
        inside = None
        if actual_p90 is not None and band is not None:
            inside = band[0] - TOLERANCE_MIN <= actual_p90 <= band[1] + TOLERANCE_MIN
        rows.append(
            {
                "hour": f"{h:02d}",
                "forecast_inflow": fc.inflow,
                "actual_inflow": len(holds),
                "capacity": fc.capacity,
                "forecast_p50": fc.p50_min,
                "forecast_p90": fc.p90_min,
                "band": band,
                "actual_p50": round(float(np.percentile(holds, 50)), 1) if len(holds) else None,
                "actual_p90": round(actual_p90, 1) if actual_p90 is not None else None,
                "inside": inside,
            }
        )
    return rows


def table(name: str, rows: list[dict[str, Any]]) -> str:
    out = [
        f"\n### {name}\n",
        "| hour | inflow fc / actual | capacity | p50 fc / actual (min) | p90 fc (band) / actual"
        " (min) | inside |",
        "|---|---:|---:|---:|---:|:---:|",
    ]
    for r in rows:
        band = f"{r['band'][0]}-{r['band'][1]}" if r["band"] else "-"
        inside = {True: "yes", False: "**no**", None: "-"}[r["inside"]]
        out.append(
            f"| {r['hour']} | {r['forecast_inflow']} / {r['actual_inflow']} | {r['capacity']} "
            f"| {r['forecast_p50']} / {r['actual_p50']} | {r['forecast_p90']} ({band}) / "
            f"{r['actual_p90']} | {inside} |"
        )
    out.append("\n" + summary(name, rows))
    return "\n".join(out)


def summary(name: str, rows: list[dict[str, Any]]) -> str:
    """The share of hours inside the band and how wide the band was."""
    judged = [r["inside"] for r in rows if r["inside"] is not None]
    share = sum(judged) / len(judged) if judged else float("nan")
    bands = [r["band"] for r in rows if r["inside"] is not None]
    width = float(np.median([hi - lo for lo, hi in bands])) if bands else float("nan")
    ratio = float(np.median([hi / max(lo, 1.0) for lo, hi in bands])) if bands else float("nan")
    return (
        f"{name}: actual p90 inside the band in {sum(judged)} of {len(judged)} hours "
        f"({share:.0%}; target >= 80%); band median width {width:.0f} min, "
        f"median top / bottom x{ratio:.1f}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    from serving.core.settings import Settings

    shipped = Settings.model_fields["forecast_runs"].default
    ap.add_argument(
        "--runs",
        type=int,
        default=shipped,
        help=f"queue simulations per forecast (default {shipped}: the service's, "
        "RISKGATE_FORECAST_RUNS)",
    )
    ap.add_argument("--maintenance-day", type=int, default=50)
    ap.add_argument(
        "--truth-days",
        type=int,
        default=None,
        help="cut the simulated truth after this many days of arrivals from the replayed day "
        "(default: every later arrival, as the simulation runs)",
    )
    ap.add_argument(
        "--no-midnight",
        action="store_true",
        help="skip the comparison with a truth cut at the day's midnight",
    )
    ap.add_argument(
        "--band",
        type=float,
        nargs=2,
        default=BAND,
        metavar=("LO", "HI"),
        help=f"percentiles of the p90 band (default {BAND[0]:g} {BAND[1]:g})",
    )
    ap.add_argument("--seed", type=int, default=0, help="the forecast's seed (its runs)")
    args = ap.parse_args()
    from data.simulator import SimulationConfig, simulate

    cfg = SimulationConfig(rows=args.rows)
    frame = simulate(cfg).sort_values(["timestamp", "transaction_id"], kind="stable")
    frame = frame.reset_index(drop=True)
    arrivals = reviewed(frame)
    first = pd.Timestamp(frame["timestamp"].min()).floor("D").timestamp()
    team = TeamConfig()
    surge = cfg.surges[0]
    surge0 = first + surge * DAY_S
    maint0 = first + args.maintenance_day * DAY_S
    d = datetime.fromtimestamp(maint0, tz=UTC)
    s = datetime.fromtimestamp(surge0, tz=UTC)
    cases = {
        f"surge day (day {surge}, calendar: 3x promotion)": (
            surge0,
            Calendar((Event("promotion", s, s + timedelta(days=1), "surge", 3.0),)),
        ),
        f"maintenance window (day {args.maintenance_day}, nobody reviewing 14:00-16:00)": (
            maint0,
            Calendar(
                (Event("maintenance", d + timedelta(hours=14), d + timedelta(hours=16), "m"),)
            ),
        ),
    }
    if len(cfg.surges) > 1:  # the second surge: the elasticity learned from the first
        surge2 = cfg.surges[1]
        s2 = datetime.fromtimestamp(first + surge2 * DAY_S, tz=UTC)
        cases[f"second surge (day {surge2}, calendar: both 3x promotions; not a target)"] = (
            first + surge2 * DAY_S,
            Calendar(
                (
                    Event("promotion", s, s + timedelta(days=1), "surge", 3.0),
                    Event("promotion", s2, s2 + timedelta(days=1), "surge 2", 3.0),
                )
            ),
        )
    truths: tuple[int | None, ...] = (args.truth_days,)
    if not args.no_midnight and args.truth_days != 1:
        truths += (1,)
    results: dict[str, Any] = {}
    judged: list[bool] = []
    midnight: list[str] = []
    for name, (day0, cal) in cases.items():
        for rolling in (False, True):
            label = f"{name}, {'rolling (each hour, 1 h ahead)' if rolling else '24 h ahead'}"
            by_truth = replay_day(
                arrivals,
                day0,
                team,
                cal,
                args.runs,
                rolling,
                truths,
                tuple(args.band),
                args.seed,
            )
            rows = by_truth[args.truth_days]
            results[label] = rows
            if "not a target" not in name:
                judged += [r["inside"] for r in rows if r["inside"] is not None]
            print(table(label, rows), flush=True)
            if 1 in by_truth and args.truth_days != 1:
                results[f"{label}, truth cut at midnight"] = by_truth[1]
                midnight.append(summary(label, by_truth[1]))
    print(
        f"\nall targets: {sum(judged)} of {len(judged)} hours inside "
        f"({sum(judged) / len(judged):.0%})"
    )
    if midnight:
        print(
            "\nfor comparison, not a target: the same forecasts against a truth cut at the "
            "day's midnight (no later arrival overtakes the day's held payments)"
        )
        print("\n".join(midnight))
    name = "forecast.json" if args.truth_days is None else f"forecast_truth{args.truth_days}.json"
    out = common.ROOT / "benchmarks" / "results" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
