"""`riskgate simulate`: replay a held-out period through three policies and a model of the team.

The model is trained in memory on the earlier part of the data (no MLflow); the held-out
period, which should contain the promotion surge, is replayed payment by payment through

1. the rule policy (review when the amount is above X, the billing and IP countries differ, or
   the device is new to the customer), reviewed first come, first served;
2. riskgate with the thresholds chosen at training time;
3. riskgate with the capacity governor of `serving.scoring.capacity` raising the review threshold
   when the expected review inflow exceeds what the reviewers on shift clear;

and each policy's reviews through `serving.review.team`'s discrete-event model of the review
team. The report (report.md, report.json, queue_hold.png) puts the rule policy's figures next
to riskgate's and says, without adjusting anything, whether the targets are met.

The rule policy is not fitted to riskgate at all. The yardstick is equal catch: for each share
of the held-out period's stoppable fraud amount (80, 90, 95, 97.5%), the fewest reviews the rule
policy needs to stop it, its X swept over the training period's amount percentiles and the best
X taken with hindsight (the strongest rule baseline there is), against the reviews riskgate
needs taking payments by its own review score (top k). Each policy is also shown at its own
operating point: riskgate at its thresholds, the rules at the lowest X whose reviews per day on
the training period fit the team's capacity (that X also drives the rule policy's replay).

`--seeds N` repeats everything with the data seed (the simulated sample) and the model seed
moved by 0..N-1 and reports each figure as median and worst seed. `--scenario` stresses the
queue (a 5x promotion day, a maintenance window with one reviewer, or both) to compare fixed
and capacity-aware thresholds where capacity runs out.

Fraud counts as caught only when it is stopped. Friendly fraud (the data's `scenario` column:
the cardholders themselves, on their own device at home, disputing a purchase later) passes a
pre-authorization review: the reviewer sees the cardholder's own device, home IP and address and
approves it. So the reviewers decline only the other fraud, and the rule-X calibration and the
equal-amount comparison count only fraud a review can stop (the all-fraud figures are reported
next to them). Data without a `scenario` column has every fraud counted as stoppable.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from serving.review.simulate.report import (
    _clean,
    _md,
    equal_catch_table,
    figures_table,
    summary_lines,
    targets_table,
)
from serving.review.simulate.run import InputError, run
from serving.review.simulate.scenarios import SCENARIOS


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser(
        "simulate",
        help="replay a held-out period through the policies and a model of the review team",
        description=(
            "Train on the earlier part of the data, replay the held-out period through the "
            "rule policy, riskgate (fixed thresholds) and riskgate (capacity-aware) and a "
            "discrete-event model of the review team; write report.md, report.json, "
            "queue_hold.png and equal_catch.png to --out, and end with a five-line summary."
        ),
    )
    s.add_argument("--data", help="CSV or Parquet with labels (default: the simulated sample)")
    s.add_argument("--mapping", help="TOML column mapping for --data")
    s.add_argument("--out", required=True, help="directory for report.md, report.json, PNG")
    s.add_argument("--seed", type=int, default=0, help="seed of the team model (handling times)")
    s.add_argument(
        "--seeds",
        type=int,
        default=1,
        metavar="N",
        help="repeat with N data seeds and model seeds (each figure: median, worst, per seed)",
    )
    s.add_argument(
        "--scenario",
        default="none",
        choices=SCENARIOS,
        help="stress the review queue: surge5 (a 5x promotion day), maintenance (6 hours with "
        "one day-shift reviewer on the busiest day), both; none (default)",
    )
    s.add_argument(
        "--test-share",
        type=float,
        default=0.3,
        help="share of the days held out at the end (default 0.3: holds the sample's surge)",
    )
    s.add_argument("--label-delay", default="7d", help="gap before validation and test (7d)")
    s.add_argument(
        "--search-trials",
        type=int,
        default=8,
        metavar="N",
        help="hyperparameter trials when training (8; 1 = the defaults, as `riskgate train`)",
    )
    s.add_argument(
        "--search-budget",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds after which the search starts no new trial (60, as `riskgate train`); on "
        "a busy machine it cuts trials and the model then depends on the machine's speed",
    )
    team = s.add_argument_group("review team")
    team.add_argument("--reviewers", type=int, default=2, help="reviewers on the day shift (2)")
    team.add_argument("--night-reviewers", type=int, default=1, help="reviewers at night (1)")
    team.add_argument(
        "--day-shift", default="8-20", help="day shift hours UTC, START-END (8-20); night = rest"
    )
    team.add_argument("--handling-median", type=float, default=4.0, help="minutes per case (4)")
    team.add_argument("--handling-sigma", type=float, default=0.5, help="lognormal sigma (0.5)")
    team.add_argument("--accuracy", type=float, default=1.0, help="share of fraud recognised")
    team.add_argument("--sla", type=float, default=15.0, help="minutes to release a case (15)")
    pol = s.add_argument_group("policies")
    pol.add_argument(
        "--rule-amount",
        type=float,
        default=None,
        help="the rule policy's amount X (default: the lowest X whose reviews per day on the "
        "training period fit the team's capacity)",
    )
    pol.add_argument(
        "--capacity-per-hour",
        type=float,
        default=None,
        help="reviews per hour for the capacity-aware policy (default: reviewers on shift x "
        "60 / mean handling minutes x --target-utilisation)",
    )
    pol.add_argument(
        "--target-utilisation",
        type=float,
        default=0.8,
        help="share of the staffed time the capacity-aware policy may fill (0.8)",
    )
    pol.add_argument(
        "--max-review-threshold",
        type=float,
        default=None,
        help="the capacity-aware policy never raises the review threshold above this, in the "
        "model's review-score unit (default: 0.2 for probability, 50 for expected saving)",
    )
    pol.add_argument(
        "--max-shed-loss",
        type=float,
        default=1000.0,
        metavar="AMOUNT",
        help="the most expected fraud loss (p x amount) per UTC day the capacity-aware policy "
        "may let through instead of reviewing (1000)",
    )
    s.set_defaults(func=simulate_command)


def simulate_command(args: argparse.Namespace) -> int:
    started = time.perf_counter()

    def say(msg: str) -> None:
        from tqdm import tqdm

        tqdm.write(f"[{time.perf_counter() - started:6.1f}s] {msg}", file=sys.stderr)

    try:
        report, pngs = run(args, say)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = _clean(report)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(_md(report))
    for name, png in pngs.items():
        (out / name).write_bytes(png)
    print(figures_table(report["policies"]))
    print()
    print(equal_catch_table(report))
    print()
    print(targets_table(report["targets"]))
    say(f"wrote {out / 'report.md'}, report.json, {', '.join(pngs)}")
    print()
    print("\n".join(summary_lines(report)))
    return 0
