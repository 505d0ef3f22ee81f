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

The default X is chosen *before* the held-out period: the largest amount (a percentile of the
training period's amounts) at which the rule policy catches at least the fraud amount share
riskgate's thresholds catch on the validation period (labels as known at the start of the
held-out period). So the two policies are compared at a similar catch, without peeking.

Fraud counts as caught only when it is stopped. Friendly fraud (the data's `scenario` column:
the cardholders themselves, on their own device at home, disputing a purchase later) passes a
pre-authorization review: the reviewer sees the cardholder's own device, home IP and address and
approves it. So the reviewers decline only the other fraud, and the rule-X calibration and the
equal-amount comparison count only fraud a review can stop (the all-fraud figures are reported
next to them). Data without a `scenario` column has every fraud counted as stoppable.
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from serving.review.team import (
    STOPPABLE,
    Shift,
    TeamConfig,
    binned_depth,
    replay,
    reviews_to_match,
)

POLICIES = ("rules", "riskgate_fixed", "riskgate_capacity")
POLICY_TITLES = {
    "rules": "rule policy (FIFO)",
    "riskgate_fixed": "riskgate fixed",
    "riskgate_capacity": "riskgate capacity-aware",
}
SURGE_FACTOR = 1.5  # a day with this many times the median day's payments is a surge day
EQUAL_AMOUNT_TARGET = 0.10
INSTANT_TARGET = 0.99
HOLD_P95_TARGET_MIN = 15.0
SWEEP_QUANTILES = (None, 0.999, 0.995, 0.99, 0.98, 0.95, 0.90)
# fraud scenarios a pre-authorization review cannot stop: the cardholder's own purchase
NOT_STOPPABLE_SCENARIOS = ("friendly_fraud",)


class InputError(Exception):
    """Bad input: reported as `error: ...` with exit status 2, and nothing is written."""


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser(
        "simulate",
        help="replay a held-out period through the policies and a model of the review team",
        description=(
            "Train on the earlier part of the data, replay the held-out period through the "
            "rule policy, riskgate (fixed thresholds) and riskgate (capacity-aware) and a "
            "discrete-event model of the review team; write report.md, report.json and "
            "queue_hold.png to --out."
        ),
    )
    s.add_argument("--data", help="CSV or Parquet with labels (default: the simulated sample)")
    s.add_argument("--mapping", help="TOML column mapping for --data")
    s.add_argument("--out", required=True, help="directory for report.md, report.json, PNG")
    s.add_argument("--seed", type=int, default=0, help="seed of the team model (handling times)")
    s.add_argument(
        "--test-share",
        type=float,
        default=0.3,
        help="share of the days held out at the end (default 0.3: holds the sample's surge)",
    )
    s.add_argument("--label-delay", default="7d", help="gap before validation and test (7d)")
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
        help="the rule policy's amount X (default: matched to riskgate on validation)",
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
    s.set_defaults(func=simulate_command)


# === inputs ===================================================================================
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


def stoppable_from_scenario(frame: pd.DataFrame) -> tuple[np.ndarray, bool]:
    """(per payment: could a review stop it if it is fraud?, did the data say?).

    From the `scenario` column (text or category): NOT_STOPPABLE_SCENARIOS are not stoppable,
    anything else (a missing value too) is. Without the column every payment is stoppable and
    the second value is False, so the report can say the split was not possible.
    """
    if "scenario" not in frame.columns:
        return np.ones(len(frame), dtype=bool), False
    scenario = frame["scenario"].astype("string")
    not_stoppable = scenario.isin(NOT_STOPPABLE_SCENARIOS).to_numpy(dtype=bool, na_value=False)
    return ~not_stoppable, True


def stoppable_note(
    has_scenario: bool, n_not: int, amount_not: float, n_fraud: int, amount_fraud: float
) -> str:
    """One plain sentence for the report: which held-out fraud a review cannot stop."""
    if not has_scenario:
        return (
            "the data has no scenario column, so every fraud is counted as one a review can "
            "stop; if it holds first-party (friendly) fraud, the figures overstate what review "
            "stops"
        )
    share = amount_not / amount_fraud if amount_fraud > 0 else 0.0
    return (
        f"{n_not:,} of the {n_fraud:,} held-out fraud payments ({amount_not:,.0f} of "
        f"{amount_fraud:,.0f}, {share:.1%} of the fraud amount) are friendly fraud, which a "
        "review does not stop"
    )


def surge_days(timestamps: pd.Series) -> list[pd.Timestamp]:
    """Days with at least SURGE_FACTOR x the median day's payments (a promotion, a holiday)."""
    per_day = timestamps.dt.floor("D").value_counts().sort_index()
    if per_day.empty:
        return []
    return [pd.Timestamp(d) for d in per_day.index[per_day >= SURGE_FACTOR * per_day.median()]]


# === policies =================================================================================
def rule_amount_from_validation(
    amount_train: np.ndarray,
    amount_valid: np.ndarray,
    signals_valid: dict[str, np.ndarray],
    fraud_valid: np.ndarray,
    riskgate_flagged_valid: np.ndarray,
    stoppable_valid: np.ndarray | None = None,
) -> tuple[float, float | None]:
    """(X, its percentile of the training amounts): the largest X whose rule policy catches at
    least riskgate's share of the fraud amount on validation (inf if the signals alone do).

    Only fraud a review can stop counts (`stoppable_valid`; all fraud when None): holding a
    friendly-fraud payment for review stops nothing, for the rules as for riskgate."""
    from training.baselines import rule_flags

    counted = fraud_valid if stoppable_valid is None else fraud_valid & stoppable_valid
    total = float(amount_valid[counted].sum())
    if total <= 0:
        return float(np.quantile(amount_train, 0.95)), 0.95
    target = float(amount_valid[riskgate_flagged_valid & counted].sum()) / total

    def share(x: float) -> float:
        flags = rule_flags(amount_valid, signals_valid, x)
        return float(amount_valid[flags & counted].sum()) / total

    if share(math.inf) >= target:
        return math.inf, None
    qs = np.round(np.arange(0.999, 0.8995, -0.001), 3)
    for q in qs:
        x = float(np.quantile(amount_train, q))
        if share(x) >= target:
            return x, float(q)
    return float(np.quantile(amount_train, qs[-1])), float(qs[-1])


def equal_at(
    flags: np.ndarray,
    fraud: np.ndarray,
    stoppable: np.ndarray,
    amount: np.ndarray,
    review_score: np.ndarray,
    p: np.ndarray,
) -> dict[str, Any]:
    """Review volume at equal fraud amount: the rule policy's reviews (`flags`) against the
    number riskgate reviews, top k by its review score, to hold the same fraud amount.

    The amount compared is fraud a review can stop (`stoppable`); the same comparison counting
    all fraud (friendly fraud too, which no review stops) is reported next to it, `*_all_fraud`.
    Also ranked by expected loss (p x amount) and by probability.
    """
    n = int(flags.sum())
    stop = fraud & stoppable
    total = float(amount[fraud].sum())
    total_stop = float(amount[stop].sum())
    hit = float(amount[flags & stop].sum())
    hit_all = float(amount[flags & fraud].sum())

    def k_for(score: np.ndarray, target: float, only_stoppable: bool) -> int:
        return reviews_to_match(score, fraud, amount, target, stoppable if only_stoppable else None)

    def ratio(k: int) -> float:
        return k / n if n else math.inf

    k = k_for(review_score, hit, True)
    k_loss = k_for(p * amount, hit, True)
    k_p = k_for(p, hit, True)
    k_all = k_for(review_score, hit_all, False)
    k_all_loss = k_for(p * amount, hit_all, False)
    return {
        "rule_reviews": n,
        "rule_stoppable_fraud_amount": hit,
        "rule_stoppable_fraud_share": hit / total_stop if total_stop > 0 else 0.0,
        "rule_not_stoppable_fraud_amount": hit_all - hit,
        "riskgate_reviews": k,
        "ratio": ratio(k),
        "riskgate_reviews_by_expected_loss": k_loss,
        "ratio_by_expected_loss": ratio(k_loss),
        "riskgate_reviews_by_probability": k_p,
        "ratio_by_probability": ratio(k_p),
        "rule_fraud_amount_all_fraud": hit_all,
        "rule_fraud_share_all_fraud": hit_all / total if total > 0 else 0.0,
        "riskgate_reviews_all_fraud": k_all,
        "ratio_all_fraud": ratio(k_all),
        "riskgate_reviews_all_fraud_by_expected_loss": k_all_loss,
        "ratio_all_fraud_by_expected_loss": ratio(k_all_loss),
    }


def surge_drift(
    reference: pd.DataFrame,
    reference_scores: np.ndarray,
    current: pd.DataFrame,
    current_scores: np.ndarray,
) -> list[dict[str, Any]] | None:
    """PSI of each feature and of the score on the surge days against the training period.

    Uses `training.drift` (`profile` of the reference, then `psi_report`); None when that
    module or those functions are not there (the report then says the section is pending).
    """
    try:
        module = importlib.import_module("training.drift")
    except ModuleNotFoundError:
        return None
    profile = getattr(module, "profile", None)
    psi_report = getattr(module, "psi_report", None)
    level = getattr(module, "level", None)
    if profile is None or psi_report is None:
        return None
    ref = profile(reference, list(reference.columns), reference_scores)
    rows = psi_report(ref, current, current_scores)
    return [
        {"name": str(name), "psi": float(value), "level": level(value) if level else None}
        for name, value in rows
    ]


# === report ===================================================================================
def _clean(value: Any) -> Any:
    """JSON-safe: numpy scalars to Python, NaN / inf to None, timestamps to ISO text."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, pd.DataFrame):
        return _clean(value.to_dict(orient="records"))
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        v = float(value)
        return v if math.isfinite(v) else None
    return value


ROWS: tuple[tuple[str, str, str], ...] = (
    ("good payments settled instantly", "good_settled_instantly_share", "pct2"),
    ("review volume (payments held)", "review_volume", "int"),
    ("reviews per day", "reviews_per_day", "f1"),
    ("reviews on surge days", "reviews_on_surge_days", "int"),
    ("peak reviews in one hour", "peak_reviews_per_hour", "int"),
    ("auto-declined payments", "declined", "int"),
    ("good payments declined", "good_declined", "int"),
    ("fraud caught (count)", "fraud_caught_count", "count_of"),
    ("fraud caught (amount)", "fraud_caught_amount", "money"),
    ("fraud caught (share of amount)", "fraud_caught_amount_share", "pct1"),
    ("fraud loss (amount let through)", "fraud_loss", "money"),
    ("fraud held for review (amount)", "fraud_reviewed_amount", "money"),
    (
        "of it friendly fraud, approved on review (amount)",
        "fraud_reviewed_not_stoppable_amount",
        "money",
    ),
    ("good payments held for review", "good_reviewed", "int"),
    ("good-payment hold p50 (min)", "hold_p50_min", "f1"),
    ("good-payment hold p95 (min)", "hold_p95_min", "f1"),
    ("good-payment hold p99 (min)", "hold_p99_min", "f1"),
    ("good-payment hold max (min)", "hold_max_min", "f1"),
    ("good-payment hold p95, surge days (min)", "hold_p95_surge_min", "f1"),
    ("peak queue depth (cases waiting)", "peak_queue_depth", "int"),
    ("SLA breaches (held > SLA)", "sla_breaches", "int"),
    ("SLA breaches on surge days", "sla_breaches_on_surge_days", "int"),
    ("reviewer utilisation", "reviewer_utilisation", "pct1"),
    ("reviewer utilisation, surge days", "reviewer_utilisation_surge_days", "pct1"),
)


def _fmt(kind: str, v: Any, fig: dict[str, Any]) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if kind == "pct2":
        return f"{v:.2%}"
    if kind == "pct1":
        return f"{v:.1%}"
    if kind == "int":
        return f"{v:,.0f}"
    if kind == "money":
        return f"{v:,.0f}"
    if kind == "count_of":
        return f"{v:,.0f} of {fig['fraud_payments']:,.0f}"
    return f"{v:,.1f}"


def figures_table(figures: dict[str, dict[str, Any]]) -> str:
    head = "| figure | " + " | ".join(POLICY_TITLES[p] for p in POLICIES) + " |"
    lines = [head, "|---|" + "---:|" * len(POLICIES)]
    for label, key, kind in ROWS:
        cells = [_fmt(kind, figures[p].get(key), figures[p]) for p in POLICIES]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets(
    figures: dict[str, dict[str, Any]], equal: dict[str, Any], has_surge: bool
) -> list[dict[str, Any]]:
    """Each target, the rule policy's figure next to each riskgate policy's, met or not."""
    out: list[dict[str, Any]] = []
    ratio = equal["ratio"]
    out.append(
        {
            "target": "review volume at equal fraud amount caught <= 10% of the rule policy's",
            "rules": equal["rule_reviews"],
            "riskgate_fixed": equal["riskgate_reviews"],
            "riskgate_capacity": equal["riskgate_reviews"],
            "value": ratio,
            "counts": "fraud a review can stop",
            "riskgate_reviews_all_fraud": equal["riskgate_reviews_all_fraud"],
            "value_all_fraud": equal["ratio_all_fraud"],
            "threshold": EQUAL_AMOUNT_TARGET,
            "met": {p: bool(ratio <= EQUAL_AMOUNT_TARGET) for p in POLICIES[1:]},
        }
    )
    out.append(
        {
            "target": ">= 99% of good payments settle instantly",
            **{p: figures[p]["good_settled_instantly_share"] for p in POLICIES},
            "threshold": INSTANT_TARGET,
            "met": {
                p: bool(figures[p]["good_settled_instantly_share"] >= INSTANT_TARGET)
                for p in POLICIES[1:]
            },
        }
    )

    def worst_p95(f: dict[str, Any]) -> float:
        values = [f["hold_p95_min"]] + ([f["hold_p95_surge_min"]] if has_surge else [])
        values = [v for v in values if v is not None and math.isfinite(v)]
        return max(values) if values else 0.0

    out.append(
        {
            "target": "p95 hold of reviewed good payments <= 15 min, whole period and surge days",
            **{p: worst_p95(figures[p]) for p in POLICIES},
            "threshold": HOLD_P95_TARGET_MIN,
            "met": {p: bool(worst_p95(figures[p]) <= HOLD_P95_TARGET_MIN) for p in POLICIES[1:]},
        }
    )
    return out


def _target_cell(t: dict[str, Any], policy: str) -> str:
    v = t[policy]
    if "10%" in t["target"]:
        return f"{v:,.0f} reviews"
    if "settle" in t["target"]:
        return f"{v:.2%}"
    return f"{v:.1f} min"


def targets_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| target | " + " | ".join(POLICY_TITLES[p] for p in POLICIES) + " |",
        "|---|" + "---:|" * len(POLICIES),
    ]
    for t in rows:
        cells = [_target_cell(t, "rules")]
        for p in POLICIES[1:]:
            cells.append(f"{_target_cell(t, p)} — {'met' if t['met'][p] else '**not met**'}")
        lines.append(f"| {t['target']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _ratio(v: float | None) -> str:
    """A share as text; None (the rules review nothing: no ratio) as a dash."""
    return "-" if v is None else f"{v:.1%}"


def _md(report: dict[str, Any]) -> str:
    s = report["setup"]
    eq = report["equal_amount"]
    ranking = "expected saving" if s.get("review_by") == "saving" else "probability"
    lines = [
        "# riskgate simulate: review delay on the held-out period",
        "",
        f"- data: {s['data']}",
        f"- held-out period: {s['test_start']} .. {s['test_end']} ({s['test_payments']:,} "
        f"payments); model trained on {s['train_start']} .. {s['train_end']}",
        f"- surge days in the held-out period: {', '.join(s['surge_days']) or 'none'}",
        f"- fraud a review cannot stop: {s['stoppable_note']}",
        f"- team: {s['team']}",
        f"- rule policy: review when amount > X = {s['rule_amount_text']}, billing and IP "
        "countries differ, or the device is new for the customer; first come, first served",
        (
            f"- riskgate: review when a review's expected saving >= {s['review_threshold']:,.2f}"
            if s.get("review_by") == "saving"
            else f"- riskgate: review at p >= {s['review_threshold']:.4f}"
        )
        + f", decline at p >= {s['decline_threshold']:.10g}; reviewers take the largest "
        "probability x amount first",
        f"- capacity-aware: {s['capacity_text']}; review threshold raised up to "
        f"{s['max_review_threshold']:g}; {s['capacity_adjusted_payments']:,} payments decided "
        f"with a raised threshold, {s['capacity_changed_decisions']:,} of them decided "
        "differently from the fixed thresholds",
        "",
        "## Figures per policy",
        "",
        figures_table(report["policies"]),
        "",
        "Hold = arrival to the reviewer's decision, for good payments sent to review. SLA "
        f"breaches count reviewed payments held longer than {s['sla_min']:g} min.",
        "",
        "Fraud caught counts fraud actually stopped: declined at scoring, or held and declined "
        "by the reviewer. Friendly fraud (cardholders disputing their own purchase later) is "
        "approved on review, since the reviewer sees the cardholder's own device, home IP and "
        "address; it is fought later by disputing the chargeback, not by review.",
        "",
        "## Targets (rule policy's figure next to riskgate's; nothing adjusted)",
        "",
        targets_table(report["targets"]),
        "",
        "The equal-amount target counts fraud a review can stop; counting friendly fraud too, "
        f"riskgate needs {eq['riskgate_reviews_all_fraud']:,} reviews "
        f"({_ratio(eq['ratio_all_fraud'])} of the rule policy's).",
        "",
        "## Review volume at equal fraud amount caught",
        "",
        f"Counted on fraud a review can stop (friendly fraud held for review is approved, so "
        f"it counts for neither policy). The rule policy reviews {eq['rule_reviews']:,} "
        f"payments holding {eq['rule_stoppable_fraud_amount']:,.0f} of such fraud "
        f"({eq['rule_stoppable_fraud_share']:.1%} of it) and "
        f"{eq['rule_not_stoppable_fraud_amount']:,.0f} of friendly fraud. Reviewing by "
        f"descending riskgate {ranking} (top k) reaches that amount after "
        f"{eq['riskgate_reviews']:,} reviews: {_ratio(eq['ratio'])} of the rule policy's volume "
        f"(target <= 10%). Ranked by expected loss (probability x amount) instead, "
        f"{eq['riskgate_reviews_by_expected_loss']:,} reviews "
        f"({_ratio(eq['ratio_by_expected_loss'])}).",
        "",
        "Counting friendly fraud too, which no review stops: the rules hold "
        f"{eq['rule_fraud_amount_all_fraud']:,.0f} of fraud and riskgate needs "
        f"{eq['riskgate_reviews_all_fraud']:,} reviews to hold as much: "
        f"{_ratio(eq['ratio_all_fraud'])}.",
        "",
        "How the comparison depends on the rule's amount X (percentiles of the training "
        "period's amounts); ratios are riskgate's top-k reviews over the rule's reviews:",
        "",
        "| X | rule reviews | stoppable fraud amount held | share of stoppable fraud amount "
        "| friendly fraud amount held | riskgate top-k | ratio | ratio by p x amount "
        "| ratio counting friendly fraud |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["rule_amount_sweep"]:
        lines.append(
            f"| {r['label']} | {r['rule_reviews']:,} | {r['rule_stoppable_fraud_amount']:,.0f} | "
            f"{r['rule_stoppable_fraud_share']:.1%} | "
            f"{r['rule_not_stoppable_fraud_amount']:,.0f} | {r['riskgate_reviews']:,} | "
            f"{_ratio(r['ratio'])} | {_ratio(r['ratio_by_expected_loss'])} | "
            f"{_ratio(r['ratio_all_fraud'])} |"
        )
    lines += ["", "## Drift of the surge days", ""]
    drift = report["surge_drift"]
    if drift is None:
        lines.append(f"Not computed: {report['surge_drift_note']}.")
    else:
        score = next((r for r in drift if r["name"] == "score"), None)
        if score is not None:
            lines.append(
                f"Score PSI on the surge days vs the training period: {score['psi']:.3f} "
                f"({score['level']}). Features, worst first (< 0.1 stable, 0.1-0.25 moderate, "
                "> 0.25 major):"
            )
        lines += ["", "| feature | PSI | level |", "|---|---:|---|"]
        for r in [r for r in drift if r["name"] != "score"][:12]:
            lines.append(f"| {r['name']} | {r['psi']:.3f} | {r['level'] or '-'} |")
    lines += ["", "![queue depth and hold time](queue_hold.png)", ""]
    return "\n".join(lines)


def _plot(
    queues: dict[str, Any],
    period: tuple[float, float],
    surge: list[pd.Timestamp],
    sla_min: float,
) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(POLICIES), 2, figsize=(13, 8.5), sharex=True, squeeze=False)
    to_dt = lambda s: pd.to_datetime(np.asarray(s) * 1e9, utc=True)  # noqa: E731
    for row, policy in enumerate(POLICIES):
        queue, good = queues[policy]
        bins = binned_depth(queue.series, period[0], period[1], 900.0)
        ax_q, ax_h = axes[row]
        ax_q.step(to_dt(bins["time"]), bins["queue_depth"], where="post", lw=0.8)
        ax_q.set_ylabel("cases waiting")
        ax_q.set_title(f"{POLICY_TITLES[policy]}: queue depth (max per 15 min)", fontsize=9)
        cases = queue.cases[good]
        ax_h.scatter(to_dt(cases["time"]), cases["hold"] / 60.0, s=3, alpha=0.5, lw=0)
        ax_h.axhline(sla_min, color="crimson", lw=0.8, ls="--", label=f"SLA {sla_min:g} min")
        ax_h.set_ylabel("hold (min)")
        ax_h.set_title(f"{POLICY_TITLES[policy]}: hold of each good payment reviewed", fontsize=9)
        if len(cases) and (cases["hold"] / 60.0).max() > 10 * sla_min:
            ax_h.set_yscale("log")
        ax_h.legend(loc="upper left", fontsize=8)
        for ax in (ax_q, ax_h):
            for day in surge:
                ax.axvspan(day, day + pd.Timedelta(days=1), color="orange", alpha=0.15, lw=0)
            ax.set_xlim(to_dt([period[0]])[0], to_dt([period[1]])[0])
    for ax in axes[-1]:
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    fig.suptitle("Review queue over the held-out period (surge days shaded)", fontsize=11)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


# === the command ==============================================================================
@dataclass
class _Heldout:
    frame: pd.DataFrame  # time, is_fraud, amount, priority; in time order
    p: np.ndarray
    rule_signals: dict[str, np.ndarray]
    surge: np.ndarray


def simulate_command(args: argparse.Namespace) -> int:
    started = time.perf_counter()

    def say(msg: str) -> None:
        from tqdm import tqdm

        tqdm.write(f"[{time.perf_counter() - started:6.1f}s] {msg}", file=sys.stderr)

    try:
        report, png = run(args, say)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(_clean(report), indent=2) + "\n")
    (out / "report.md").write_text(_md(_clean(report)))
    (out / "queue_hold.png").write_bytes(png)
    print(figures_table(_clean(report["policies"])))
    print()
    print(targets_table(_clean(report["targets"])))
    say(f"wrote {out / 'report.md'}, report.json, queue_hold.png")
    return 0


def run(args: argparse.Namespace, say: Any) -> tuple[dict[str, Any], bytes]:
    """Everything but the writing: (report, PNG bytes). Raises InputError for bad input."""
    from tqdm import tqdm

    from data.load import parse_duration
    from serving.review.team import capacity_aware_decisions, to_seconds
    from serving.scoring.capacity import CapacityConfig
    from training import thresholds as th
    from training.baselines import RULE_SIGNALS, rule_flags
    from training.config import TrainConfig
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
    config = TrainConfig(test_share=args.test_share, label_delay_days=delay / pd.Timedelta(days=1))

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

    bar = tqdm(total=config.lightgbm.n_estimators, desc="boosting", unit="tree", file=sys.stderr)

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

    with tqdm(total=len(p), desc="capacity-aware", unit="payment", file=sys.stderr) as cbar:

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
    for name in tqdm(POLICIES, desc="review team", unit="policy", file=sys.stderr):
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
