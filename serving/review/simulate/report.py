"""The report: JSON-safe values, the figures and targets tables, report.md and queue_hold.png."""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
import pandas as pd

from serving.review.team import (
    binned_depth,
)

POLICIES = ("rules", "riskgate_fixed", "riskgate_capacity")


POLICY_TITLES = {
    "rules": "rule policy (FIFO)",
    "riskgate_fixed": "riskgate fixed",
    "riskgate_capacity": "riskgate capacity-aware",
}


EQUAL_AMOUNT_TARGET = 0.10


INSTANT_TARGET = 0.99


HOLD_P95_TARGET_MIN = 15.0


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
