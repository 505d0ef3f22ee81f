"""The promotion gate: a challenger replaces the champion only when it is better. Pure."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    promote: bool
    reason: str


def decide(
    metrics: dict[str, float],
    champion_version: str | None,
    compared_with: str | None,
    comparable: bool,
) -> Verdict:
    """Better = higher average precision AND at least as much fraud amount caught at the same
    review count, both measured on the challenger's test period in its training run."""
    if champion_version is None:
        return Verdict(True, "no champion yet: the challenger becomes the first champion")
    if compared_with != champion_version:
        return Verdict(
            False,
            f"the challenger was compared with v{compared_with or 'none'}, but the champion is now "
            f"v{champion_version}: retrain to compare on the same test period",
        )
    if not comparable:
        return Verdict(False, "the champion uses other features: no like-for-like comparison")
    ap, champ_ap = (
        metrics.get("riskgate_average_precision"),
        metrics.get("champion_average_precision"),
    )
    amt = metrics.get("challenger_amount_caught_at_k")
    champ_amt = metrics.get("champion_amount_caught")
    if ap is None or champ_ap is None or amt is None or champ_amt is None:
        return Verdict(False, "comparison metrics are missing from the challenger's run")
    better = ap > champ_ap and amt >= champ_amt
    text = (
        f"challenger AP {ap:.4f} vs champion {champ_ap:.4f}; amount caught {amt:,.2f} vs "
        f"{champ_amt:,.2f} at the same review count"
    )
    return Verdict(better, ("better: " if better else "not better: ") + text)
