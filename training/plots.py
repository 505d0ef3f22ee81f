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


def calibration(y: np.ndarray, p: np.ndarray, out: Path, bins: int = 10) -> Path:
    plt = _plt()
    order = np.argsort(p)
    chunks = [c for c in np.array_split(order, bins) if len(c)]
    mean_p = [p[c].mean() for c in chunks]
    rate = [y[c].mean() for c in chunks]
    fig, ax = plt.subplots(figsize=(5, 5))
    hi = max(max(mean_p), max(rate), 1e-3) * 1.1
    ax.plot([0, hi], [0, hi], "--", color="grey", label="perfect")
    ax.plot(mean_p, rate, "o-", label="riskgate (equal-count bins)")
    ax.set(xlabel="predicted fraud probability", ylabel="observed fraud rate", title="Calibration")
    ax.legend()
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
    fig, ax = plt.subplots(figsize=(6, 4.5))
    review = [r["review_rate"] * 100 for r in rows]
    ax.plot(
        review, [r["fraud_amount_caught"] * 100 for r in rows], "o-", label="fraud amount caught"
    )
    ax.plot(review, [r["fraud_caught"] * 100 for r in rows], "s-", label="fraud count caught")
    for r, x in zip(rows, review, strict=True):
        ax.annotate(
            f"cap {r['capacity_share']:.2%}", (x, r["fraud_amount_caught"] * 100), fontsize=7
        )
    ax.set(
        xlabel="review rate on test (%)",
        ylabel="% of fraud caught",
        title="Review capacity trade-off",
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
