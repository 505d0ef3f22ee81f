"""Figures logged with each training run. Matplotlib's Agg backend: no display needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def pr_curves(y: np.ndarray, scores: dict[str, np.ndarray], out: Path) -> Path:
    from sklearn.metrics import average_precision_score, precision_recall_curve

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, s in scores.items():
        prec, rec, _ = precision_recall_curve(y, s)
        ax.plot(rec, prec, label=f"{name} (AP {average_precision_score(y, s):.3f})")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall on the test period")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def calibration(y: np.ndarray, p: np.ndarray, out: Path, bins: int = 12) -> Path:
    """Observed vs predicted fraud rate in equal-count (quantile) bins, on log axes: at a 0.5%
    fraud rate almost every payment sits below p = 0.01, where linear axes show one dot."""
    plt = _plt()
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    chunks = [c for c in np.array_split(order, bins) if len(c)]
    mean_p = np.array([p[c].mean() for c in chunks])
    rate = np.array([y[c].mean() for c in chunks])
    n = np.array([len(c) for c in chunks])
    floor = 0.5 / max(int(n.max()), 1)  # a bin without fraud is drawn at half a fraud
    lo = max(min(mean_p.min(), floor) * 0.5, 1e-6)
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    ax.plot([lo, 1], [lo, 1], "--", color="grey", label="perfect")
    # binomial standard error of each bin's rate, as a bar (clipped to the floor)
    err = np.sqrt(np.maximum(rate * (1 - rate), floor) / n)
    shown = np.maximum(rate, floor)
    ax.errorbar(
        mean_p,
        shown,
        yerr=[np.minimum(err, shown - floor * 0.99), err],
        fmt="o-",
        capsize=2,
        label=f"riskgate ({len(chunks)} equal-count bins of ~{int(np.median(n)):,})",
    )
    empty = rate == 0
    if empty.any():
        ax.plot(mean_p[empty], shown[empty], "v", color="C3", label="bin with no fraud")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, 1)
    ax.set_ylim(lo, 1)
    ax.set(
        xlabel="predicted fraud probability (bin mean, log)",
        ylabel="observed fraud rate (log)",
        title=f"Calibration (test fraud rate {y.mean():.2%})",
    )
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def shap_summary(contrib: np.ndarray, X: np.ndarray, names: list[str], out: Path) -> Path:
    import shap

    plt = _plt()
    shap.summary_plot(contrib, X, feature_names=names, show=False, max_display=15)
    fig = plt.gcf()
    fig.set_size_inches(8, 6)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def tradeoff(rows: list[dict[str, float]], out: Path) -> Path:
    plt = _plt()
    fig = tradeoff_figure(rows)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def tradeoff_figure(rows: list[dict[str, float]]):  # type: ignore[no-untyped-def]
    """Fraud caught against the review rate, one point per review capacity. The capacities
    (0.25% .. 5%) crowd the left of a linear axis: a log axis spreads them, and each label sits
    in its own slot of a row along the bottom with a line to its point, so no two labels overlap
    even when capacities review alike."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.8))
    review = np.array([max(r["review_rate"] * 100, 1e-3) for r in rows])
    amount = [r["fraud_amount_caught"] * 100 for r in rows]
    count = [r["fraud_caught"] * 100 for r in rows]
    ax.plot(review, amount, "o-", label="fraud amount caught")
    ax.plot(review, count, "s-", label="fraud count caught")
    ax.set_xscale("log")
    ax.set_xlim(review.min() / 1.6, review.max() * 1.6)
    ticks: list[float] = []
    for x in np.unique(review):  # tick labels at least a factor 1.4 apart: no overlap either
        if not ticks or x >= ticks[-1] * 1.4:
            ticks.append(float(x))
    ax.set_xticks(ticks, [f"{x:.2g}%" for x in ticks])
    ax.xaxis.set_minor_locator(plt.NullLocator())
    ax.set_ylim(-25, 105)
    for i, (r, x) in enumerate(zip(rows, review, strict=True)):
        ax.annotate(
            f"capacity {r['capacity_share']:.2%}\nreviews {x:.2f}%",
            (x, min(amount[i], count[i])),
            xytext=((i + 0.5) / len(rows), 0.03),  # a row of slots along the bottom
            textcoords="axes fraction",
            ha="center",
            va="bottom",
            fontsize=7,
            arrowprops={"arrowstyle": "-", "color": "grey", "lw": 0.5},
        )
    ax.set_yticks([0, 20, 40, 60, 80, 100])
    ax.axhline(0, color="grey", lw=0.5)
    ax.set(
        xlabel="review rate on test (% of payments, log)",
        ylabel="% of fraud caught",
        title="Review capacity trade-off",
    )
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig
