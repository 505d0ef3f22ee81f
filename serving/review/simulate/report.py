"""The report: JSON-safe values, the figures and targets tables, report.md and queue_hold.png."""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
import pandas as pd

from serving.review.simulate.seeds import median, worst
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
    if isinstance(v, dict) and "median" in v:
        med, wst = _fmt(kind, v["median"], fig), _fmt(kind, v["worst"], fig)
        return med if med == wst else f"{med} ({wst})"
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
        return f"{v:,.0f} of {median(fig['fraud_payments']):,.0f}"
    return f"{v:,.1f}"


def figures_table(figures: dict[str, dict[str, Any]], rows: Any = None) -> str:
    """The figures per policy; with seeds each cell is the median (worst seed in brackets)."""
    head = "| figure | " + " | ".join(POLICY_TITLES[p] for p in POLICIES) + " |"
    lines = [head, "|---|" + "---:|" * len(POLICIES)]
    for label, key, kind in rows or ROWS:
        cells = [_fmt(kind, figures[p].get(key), figures[p]) for p in POLICIES]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


SCENARIO_ROWS: tuple[tuple[str, str, str], ...] = (
    ("review volume (payments held)", "review_volume", "int"),
    ("good-payment hold p95 (min)", "hold_p95_min", "f1"),
    ("good-payment hold p99 (min)", "hold_p99_min", "f1"),
    ("good-payment hold p95 on the scenario day (min)", "hold_p95_scenario_day_min", "f1"),
    ("good-payment hold p99 on the scenario day (min)", "hold_p99_scenario_day_min", "f1"),
    ("SLA breaches (held > SLA)", "sla_breaches", "int"),
    ("SLA breaches on the scenario day", "sla_breaches_on_scenario_day", "int"),
    ("peak queue depth (cases waiting)", "peak_queue_depth", "int"),
    ("reviews shed (fixed would review, capacity-aware approves)", "reviews_shed", "int"),
    ("extra fraud let through (count)", "extra_fraud_count", "int"),
    ("extra fraud let through (amount)", "extra_fraud_amount", "money"),
    ("extra fraud let through, worst day (amount)", "extra_fraud_amount_worst_day", "money"),
    ("expected loss of the shed reviews (p x amount)", "shed_expected_loss", "money"),
    ("fraud loss (amount let through)", "fraud_loss", "money"),
)


def scenario_table(report: dict[str, Any]) -> str:
    """Fixed vs capacity-aware thresholds (the rule policy next to them) under the scenario."""
    cap = report["setup"].get("max_shed_loss_per_day")
    rows = [
        *SCENARIO_ROWS,
        ("configured maximum expected loss shed per day", "_max", "money"),
    ]
    figures = {p: {**report["policies"][p], "_max": cap} for p in POLICIES}
    for p in POLICIES[:2]:
        for key in ("reviews_shed", "extra_fraud_count", "extra_fraud_amount"):
            figures[p].setdefault(key, 0.0)
        for key in ("extra_fraud_amount_worst_day", "shed_expected_loss", "_max"):
            figures[p][key] = None
    return figures_table(figures, rows)


def _ok(v: Any, limit: float, seeds: int, higher: bool = False) -> bool:
    """Median within the limit, and with seeds the worst seed within 1.5x of it too (ratios),
    or the median alone (the other targets)."""
    med = median(v)
    if med is None:
        return False
    return bool(med >= limit if higher else med <= limit)


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with the rule policy's figure next to each riskgate policy's, met or not.

    With --seeds, the equal-catch ratios need the median within the target and the worst seed
    within WORST_SEED_FACTOR x the target; the other targets are judged on the median."""
    from serving.review.simulate.analysis import CATCH_TARGETS, WORST_SEED_FACTOR

    setup = report["setup"]
    seeds = int(setup.get("seeds", 1))
    figures = report["policies"]
    out: list[dict[str, Any]] = []
    for row in report["equal_catch"]:
        c, r = row["catch"], row["ratio"]
        limit = CATCH_TARGETS.get(c, EQUAL_AMOUNT_TARGET)
        met = _ok(r, limit, seeds)
        if seeds > 1:
            met = met and worst(r) is not None and worst(r) <= WORST_SEED_FACTOR * limit
        text = f"reviews at equal catch ({c:.1%} of the stoppable fraud amount) <= {limit:.0%}"
        if seeds > 1:
            text += f" of the rule policy's (median; worst seed <= {WORST_SEED_FACTOR * limit:.0%})"
        else:
            text += " of the rule policy's"
        rg = f"{_fmt('int', row['riskgate_reviews'], {})} reviews, {_fmt('pct1', r, {})}"
        out.append(
            {
                "target": text,
                "kind": "equal_catch",
                "catch": c,
                "value": r,
                "threshold": limit,
                "cells": {
                    "rules": f"{_fmt('int', row['rule_reviews'], {})} reviews",
                    "riskgate_fixed": rg,
                    "riskgate_capacity": rg,
                },
                "met": {"riskgate_fixed": met, "riskgate_capacity": met},
            }
        )
    key = "good_settled_instantly_share"
    out.append(
        {
            "target": ">= 99% of good payments settle instantly",
            "kind": "settled",
            "threshold": INSTANT_TARGET,
            "cells": {p: _fmt("pct2", figures[p][key], {}) for p in POLICIES},
            "met": {p: _ok(figures[p][key], INSTANT_TARGET, seeds, True) for p in POLICIES[1:]},
        }
    )
    sla = float(setup.get("sla_minutes") or HOLD_P95_TARGET_MIN)
    st = report["sla_target"]
    out.append(
        {
            "target": f"p95 hold of reviewed good payments <= {sla:g} min (the SLA), whole "
            "period and the scenario day",
            "kind": "hold",
            "threshold": sla,
            "cells": {p: f"{_fmt('f1', st[p], {})} min" for p in POLICIES},
            "met": {p: _ok(st[p], sla, seeds) for p in POLICIES[1:]},
        }
    )
    if setup.get("scenario", "none") != "none":
        cap = figures["riskgate_capacity"]
        most = setup.get("max_shed_loss_per_day")
        fixed_p95 = figures["riskgate_fixed"]["hold_p95_min"]
        cap_p95 = cap["hold_p95_min"]
        fixed_breaches = not _ok(fixed_p95, sla, seeds)
        cap_keeps = _ok(cap_p95, sla, seeds)
        within = most is None or _ok(cap["extra_fraud_amount_worst_day"], float(most), seeds)
        out.append(
            {
                "target": f"under {setup['scenario']}: capacity-aware keeps the p95 hold (whole "
                "period) <= SLA while fixed breaches it, extra fraud let through (worst day) <= "
                "the configured maximum",
                "kind": "scenario",
                "threshold": sla,
                "cells": {
                    "rules": f"{_fmt('f1', figures['rules']['hold_p95_min'], {})} min",
                    "riskgate_fixed": f"{_fmt('f1', fixed_p95, {})} min"
                    + (" (breaches)" if fixed_breaches else " (does not breach)"),
                    "riskgate_capacity": f"{_fmt('f1', cap_p95, {})} min; extra "
                    f"fraud {_fmt('money', cap['extra_fraud_amount_worst_day'], {})} on the "
                    f"worst day (max {_fmt('money', most, {})})",
                },
                "met": {
                    "riskgate_fixed": fixed_breaches,
                    "riskgate_capacity": bool(fixed_breaches and cap_keeps and within),
                },
            }
        )
    return out


def targets_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| target | " + " | ".join(POLICY_TITLES[p] for p in POLICIES) + " |",
        "|---|" + "---:|" * len(POLICIES),
    ]
    for t in rows:
        cells = [t["cells"]["rules"]]
        for p in POLICIES[1:]:
            cells.append(f"{t['cells'][p]} — {'met' if t['met'][p] else '**not met**'}")
        lines.append(f"| {t['target']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _ratio(v: Any) -> str:
    """A share as text (median and worst with seeds); None (no ratio) as a dash."""
    if isinstance(v, dict) and "median" in v:
        med, wst = _ratio(v["median"]), _ratio(v["worst"])
        return med if med == wst else f"{med} ({wst})"
    return "-" if v is None else f"{v:.1%}"


def _rule_x(v: Any) -> str:
    """The rule's X; None is X = inf (report.json has no infinity): the signals alone."""
    if isinstance(v, dict) and "per_seed" in v:
        return "; ".join(_rule_x(x) for x in v["per_seed"])
    return "inf (signals only)" if v is None else f"{v:,.0f}"


def equal_catch_table(report: dict[str, Any]) -> str:
    from serving.review.simulate.analysis import CATCH_TARGETS

    lines = [
        "| catch (share of stoppable fraud amount) | rule reviews (best X) | rule X (per seed) "
        "| riskgate reviews (top k) | ratio | target |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["equal_catch"]:
        lines.append(
            f"| {r['catch']:.1%} | {_fmt('int', r['rule_reviews'], {})} | "
            f"{_rule_x(r['rule_amount'])} | {_fmt('int', r['riskgate_reviews'], {})} | "
            f"{_ratio(r['ratio'])} | <= {CATCH_TARGETS.get(r['catch'], 0):.0%} |"
        )
    return "\n".join(lines)


def _low_ranked_text(report: dict[str, Any]) -> list[str]:
    """Per catch level that misses its target: the frauds riskgate ranks too low to reach it."""
    detail = report["equal_catch_detail"]
    runs = detail["per_seed"] if isinstance(detail, dict) else [detail]
    seeds = report["setup"].get("per_seed") or [report["setup"]]
    lines: list[str] = []
    for run, seed in zip(runs, seeds, strict=False):
        for d in run:
            lr = d.get("low_ranked")
            if not lr:
                continue
            scen = ", ".join(
                f"{name} {e['count']:.0f} ({e['amount']:,.0f})"
                for name, e in lr["by_scenario"].items()
            )
            big = "; ".join(
                f"{f['scenario']} {f['amount']:,.0f} at p = {f['probability']:.3f} (rank "
                f"{f['rank']:,})"
                for f in lr["largest"]
            )
            tag = (
                f"data seed {seed.get('data_seed')}, model seed {seed.get('model_seed')}"
                if len(runs) > 1
                else "this run"
            )
            lines.append(
                f"- {d['catch']:.1%} catch ({tag}): the target allows {lr['allowed_reviews']:,} "
                f"reviews, riskgate needs {lr['needed_reviews']:,}; in between it reaches "
                f"{lr['frauds']} frauds worth {lr['amount']:,.0f} ({scen}). The largest: {big}."
            )
    return lines


def summary_lines(report: dict[str, Any]) -> list[str]:
    """Five lines a platform manager can read: instant settlement, reviews at equal catch, p95
    hold, fraud stopped, and what a surge does to each (with seeds: medians)."""
    f = report["policies"]
    r, g = f["rules"], f["riskgate_fixed"]
    s = report["setup"]
    m = median
    eq = {row["catch"]: row for row in report["equal_catch"]}
    ratios = ", ".join(
        f"{c:.1%}: {_fmt('int', m(eq[c]['riskgate_reviews']), {})} vs "
        f"{_fmt('int', m(eq[c]['rule_reviews']), {})} ({_ratio(m(eq[c]['ratio']))})"
        for c in sorted(eq)
    )
    seeds = int(s.get("seeds", 1))
    tag = f" (median of {seeds} seeds)" if seeds > 1 else ""
    sla = s.get("sla_minutes", HOLD_P95_TARGET_MIN)
    surge = "surge days" if s.get("surge_days") else "the busiest day"
    key = "hold_p95_surge_min" if s.get("surge_days") else "hold_p95_scenario_day_min"
    bkey = "sla_breaches_on_surge_days" if s.get("surge_days") else "sla_breaches_on_scenario_day"
    return [
        f"settled instantly{tag}: riskgate {_fmt('pct2', m(g['good_settled_instantly_share']), {})}"
        f" of good payments, the rules {_fmt('pct2', m(r['good_settled_instantly_share']), {})}",
        f"reviews at equal catch, riskgate vs the best rule X: {ratios}",
        f"p95 hold of reviewed good payments: riskgate {_fmt('f1', m(g['hold_p95_min']), {})} min, "
        f"the rules {_fmt('f1', m(r['hold_p95_min']), {})} min (SLA {sla:g} min)",
        f"fraud stopped: riskgate {_fmt('money', m(g['fraud_caught_amount']), {})} "
        f"({_fmt('pct1', m(g['fraud_caught_amount_share']), {})} of the amount) with "
        f"{_fmt('int', m(g['review_volume']), {})} reviews, the rules "
        f"{_fmt('money', m(r['fraud_caught_amount']), {})} "
        f"({_fmt('pct1', m(r['fraud_caught_amount_share']), {})}) with "
        f"{_fmt('int', m(r['review_volume']), {})}",
        f"on {surge}: riskgate p95 hold {_fmt('f1', m(g[key]), {})} min, "
        f"{_fmt('int', m(g[bkey]), {})} SLA breaches; the rules "
        f"{_fmt('f1', m(r[key]), {})} min, {_fmt('int', m(r[bkey]), {})} breaches"
        + (f" (scenario {s['scenario']})" if s.get("scenario", "none") != "none" else ""),
    ]


def _md(report: dict[str, Any]) -> str:
    s = report["setup"]
    eq = report["equal_amount"]
    op = report["operating_points"]
    seeds = int(s.get("seeds", 1))
    ranking = "expected saving" if s.get("review_by") == "saving" else "probability"

    def n(v: Any) -> str:
        return _fmt("int", v, {})

    def mo(v: Any) -> str:
        return _fmt("money", v, {})

    pc = _ratio
    lines = [
        "# riskgate simulate: review delay on the held-out period",
        "",
        *summary_lines(report),
        "",
        f"- data: {s['data']}"
        + (
            f"; {seeds} seeds (data seed and model seed moved together; each figure is the "
            "median, the worst seed in brackets)"
            if seeds > 1
            else ""
        ),
        f"- held-out period: {s['test_start']} .. {s['test_end']} ({s['test_payments']:,} "
        f"payments); model trained on {s['train_start']} .. {s['train_end']}",
        f"- surge days in the held-out period: {', '.join(s['surge_days']) or 'none'}",
        f"- scenario: {s.get('scenario_text', 'none')}"
        + (f"; maintenance: {s['maintenance']}" if s.get("maintenance") else ""),
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
        f"{s['max_review_threshold']:g}; at most {mo(s.get('max_shed_loss_per_day'))} of "
        f"expected loss shed per day; {s['capacity_adjusted_payments']:,} payments decided "
        f"with a raised threshold, {s['capacity_changed_decisions']:,} of them decided "
        "differently from the fixed thresholds",
        "",
        "## Review volume at equal catch",
        "",
        "For each catch level, the share of the held-out period's fraud amount a review can "
        "stop (friendly fraud excluded): the fewest reviews the rule policy needs to stop it, "
        "with X swept over the training period's amount percentiles (every 0.1th, and the "
        "signals alone) and the best X taken with hindsight, against the reviews riskgate "
        f"needs taking payments by descending {ranking} (top k). Nothing is fitted to riskgate.",
        "",
        equal_catch_table(report),
        "",
        "![review volume against fraud amount stopped](equal_catch.png)",
        "",
        *_low_ranked_text(report),
        "",
        "Each policy at its own operating point: riskgate at its thresholds holds "
        f"{n(op['riskgate']['reviews'])} payments and declines {n(op['riskgate']['declines'])}, "
        f"stopping {mo(op['riskgate']['stopped_amount'])} "
        f"({_fmt('pct1', op['riskgate']['catch_share'], {})}) of the stoppable fraud; the rule "
        f"policy at X = {mo(op['rules']['rule_amount'])}, the most its capacity allows "
        f"({n(op['rules']['capacity_reviews'])} reviews in the period), reviews "
        f"{n(op['rules']['reviews'])} and stops {mo(op['rules']['stopped_amount'])} "
        f"({_fmt('pct1', op['rules']['catch_share'], {})}). To stop as much as riskgate, the "
        f"best rule X needs {n(op['rule_reviews_at_riskgate_catch'])} reviews; to stop as much "
        f"as the rules, riskgate needs {n(op['riskgate_reviews_at_rules_catch'])} "
        f"({pc(eq['ratio'])} of the rules' reviews; ranked by p x amount "
        f"{pc(eq['ratio_by_expected_loss'])}; counting friendly fraud as caught "
        f"{pc(eq['ratio_all_fraud'])}).",
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
    ]
    if s.get("scenario", "none") != "none":
        lines += [
            f"## Scenario {s['scenario']}: fixed vs capacity-aware thresholds",
            "",
            f"{s.get('scenario_text')}; scenario day {s.get('scenario_day')}. Reviews shed are "
            "payments the fixed thresholds send to review and the capacity-aware ones approve; "
            "the extra fraud let through is the stoppable fraud among them.",
            "",
            scenario_table(report),
            "",
        ]
    lines += [
        "## Targets (rule policy's figure next to riskgate's; nothing adjusted)",
        "",
        targets_table(report["targets"]),
        "",
        "## The rule policy at a few X",
        "",
        "Ratios are riskgate's top-k reviews over the rule's reviews at equal stoppable fraud "
        "amount held:",
        "",
        "| X | rule reviews | stoppable fraud amount held | share of stoppable fraud amount "
        "| friendly fraud amount held | riskgate top-k | ratio | ratio by p x amount "
        "| ratio counting friendly fraud |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["rule_amount_sweep"]:
        label = r["label"] if isinstance(r["label"], str) else r["label"]["per_seed"][0]
        lines.append(
            f"| {label} | {n(r['rule_reviews'])} | {mo(r['rule_stoppable_fraud_amount'])} | "
            f"{_fmt('pct1', r['rule_stoppable_fraud_share'], {})} | "
            f"{mo(r['rule_not_stoppable_fraud_amount'])} | {n(r['riskgate_reviews'])} | "
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


def frontier_plot(runs: list[dict[str, Any]]) -> bytes:
    """Review volume against the share of stoppable fraud amount stopped, both policies (one
    line per seed), with the catch levels and each policy's operating point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))
    for j, r in enumerate(runs):
        curve = np.asarray(r["riskgate"], dtype=np.float64)
        k = np.arange(len(curve))
        rules = r["rules"]
        alpha = 1.0 if j == 0 else 0.35
        first = j == 0
        ax.plot(
            k[1:],
            curve[1:],
            color="tab:blue",
            lw=1.2,
            alpha=alpha,
            label="riskgate, top k by its review score" if first else None,
        )
        ax.step(
            rules["reviews"],
            rules["share"],
            where="post",
            color="tab:orange",
            lw=1.2,
            alpha=alpha,
            label="rule policy, X swept over the amount percentiles" if first else None,
        )
        op, total = r["operating"], r["total"] or 1.0
        ax.plot(
            op["riskgate"]["reviews"] + op["riskgate"]["declines"],
            op["riskgate"]["stopped_amount"] / total,
            "o",
            color="tab:blue",
            alpha=alpha,
            label="riskgate at its thresholds" if first else None,
        )
        ax.plot(
            op["rules"]["reviews"],
            op["rules"]["stopped_amount"] / total,
            "s",
            color="tab:orange",
            alpha=alpha,
            label="rules at the X the capacity allows" if first else None,
        )
    for row in runs[0]["levels"]:
        ax.axhline(row["catch"], color="grey", lw=0.6, ls=":")
        ax.text(1.2, row["catch"] + 0.004, f"{row['catch']:.1%}", fontsize=7, color="grey")
    ax.set_xscale("log")
    ax.set_xlim(1, None)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("payments reviewed in the held-out period (log scale)")
    ax.set_ylabel("share of the stoppable fraud amount stopped")
    title = "Review volume against fraud stopped: the two frontiers"
    if len(runs) > 1:
        title += f" ({len(runs)} seeds)"
    ax.set_title(title, fontsize=11)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(True, which="both", lw=0.3, alpha=0.5)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


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
