"""The model artifact: LightGBM booster + calibration + feature list + thresholds, as one unit.

Everything the service needs to score travels together, so a model can never be served with
another model's thresholds or another feature definition. Stored as a directory of two files
(`riskmodel.json`, `booster.txt`), which `training.tracking` logs to MLflow as one artifact.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from training import compiled as compiled_mod

TIE_BREAK = 1e-6
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Thresholds:
    """Decline at or above a calibrated probability; review at or above a review score.

    The review score is the probability itself (`review_by="probability"`) or the expected
    saving of a review in money (`review_by="saving"`): p x (amount + chargeback fee) minus the
    review cost and the expected cost of holding a good payment. Reviewing by saving puts the
    most money at risk in front of reviewers: a 2,000 payment at p = 0.05 before a 3 one at 0.3.
    """

    review: float
    decline: float
    review_by: str = "probability"
    chargeback_fee: float = 0.0
    review_cost: float = 0.0
    hold_cost: float = 0.0

    def review_score(self, p: Any, amount: Any = 0.0) -> Any:
        """Works on floats and numpy arrays alike."""
        if self.review_by == "saving":
            return p * (amount + self.chargeback_fee) - self.review_cost - (1 - p) * self.hold_cost
        return p

    def decide(self, p: float, amount: float = 0.0) -> str:
        if p >= self.decline:
            return "decline"
        if self.review_score(p, amount) >= self.review:
            return "review"
        return "approve"


@dataclass(frozen=True)
class Calibration:
    """Isotonic (piecewise-linear through x/y) or Platt (sigmoid a*logit+b) on raw scores."""

    method: str
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()
    a: float = 1.0
    b: float = 0.0

    @cached_property
    def _knots(self) -> tuple[np.ndarray, np.ndarray]:
        """x and y as arrays, made once: np.interp converted the tuples on every call, which
        was most of a one-row prediction (22 of 30 us)."""
        return np.asarray(self.x, dtype=np.float64), np.asarray(self.y, dtype=np.float64)

    def apply(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.float64)
        if self.method == "isotonic":
            # A sliver of the raw score breaks isotonic plateaus, so thresholds can cut anywhere.
            x, y = self._knots
            return np.interp(raw, x, y) * (1 - TIE_BREAK) + TIE_BREAK * raw
        logit = np.log(np.clip(raw, 1e-12, 1 - 1e-12) / np.clip(1 - raw, 1e-12, 1.0))
        return 1.0 / (1.0 + np.exp(-(self.a * logit + self.b)))


@dataclass
class RiskModel:
    """A fitted fraud model. `predict_proba` takes a C-contiguous float64 matrix."""

    booster: lgb.Booster
    features: tuple[str, ...]
    feature_set_version: str
    calibration: Calibration
    thresholds: Thresholds
    metadata: dict[str, Any] = field(default_factory=dict)
    profile: dict[str, Any] | None = None  # reference distributions for drift (training.drift)
    # the booster compiled to C (training.compiled), checked equal to it on load; None: booster
    compiled: compiled_mod.CompiledPredictor | None = field(default=None, repr=False)

    def raw(self, X: np.ndarray, threads: int = 1) -> np.ndarray:
        """The booster's probability (before calibration). One thread by default: serving scores
        one payment at a time; training passes more. Small inputs go to the compiled predictor
        when the artifact carries one (same margins within 1e-9, ~10x less time per row)."""
        if self.compiled is not None and len(X) <= COMPILED_MAX_ROWS:
            return 1.0 / (1.0 + np.exp(-self.compiled.margin(X)))
        return np.asarray(self.booster.predict(X, num_threads=threads), dtype=np.float64)

    def predict_proba(self, X: np.ndarray, threads: int = 1) -> np.ndarray:
        return self.calibration.apply(self.raw(X, threads))

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Per-feature SHAP values (log-odds of the raw model) plus the bias in the last column.

        LightGBM's pred_contrib computes TreeSHAP exactly, the same numbers as shap's TreeExplainer.
        """
        return np.asarray(self.booster.predict(X, pred_contrib=True, num_threads=1))

    def save(self, directory: str | Path, compile: bool = False) -> Path:
        """Write the artifact; `compile` (or a model loaded with one) adds the compiled
        predictor (gcc, a few seconds per hundred trees)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / "booster.txt").write_text(self.booster.model_to_string())
        target = d / compiled_mod.LIBRARY
        if self.compiled is not None and self.compiled.path.resolve() != target.resolve():
            shutil.copyfile(self.compiled.path, target)
        elif self.compiled is None and compile:
            compiled_mod.compile_booster(self.booster, d)
        meta = {
            "features": list(self.features),
            "feature_set_version": self.feature_set_version,
            "calibration": asdict(self.calibration),
            "thresholds": asdict(self.thresholds),
            "metadata": self.metadata,
        }
        (d / "riskmodel.json").write_text(json.dumps(meta, indent=2, default=str))
        if self.profile is not None:
            (d / "profile.json").write_text(json.dumps(self.profile))
        return d

    @classmethod
    def load(cls, directory: str | Path) -> RiskModel:
        """The artifact; its compiled predictor, if any, must equal the booster
        (CompiledMismatchError otherwise); without one, scoring uses the booster (logged)."""
        d = Path(directory)
        meta = json.loads((d / "riskmodel.json").read_text())
        cal = meta["calibration"]
        booster = lgb.Booster(model_str=(d / "booster.txt").read_text())
        return cls(
            booster=booster,
            compiled=load_compiled(booster, d),
            features=tuple(meta["features"]),
            feature_set_version=meta["feature_set_version"],
            calibration=Calibration(
                method=cal["method"],
                x=tuple(cal["x"]),
                y=tuple(cal["y"]),
                a=cal["a"],
                b=cal["b"],
            ),
            thresholds=Thresholds(**meta["thresholds"]),
            metadata=meta.get("metadata", {}),
            profile=json.loads((d / "profile.json").read_text())
            if (d / "profile.json").exists()
            else None,
        )


COMPILED_MAX_ROWS = 64  # beyond this LightGBM's own batch predict is as fast per row


def load_compiled(booster: lgb.Booster, d: Path) -> compiled_mod.CompiledPredictor | None:
    """The artifact's compiled predictor after the parity check, or None (old artifact, or an
    objective whose output is not the sigmoid of the margin): then the booster scores."""
    path = d / compiled_mod.LIBRARY
    if not path.exists():
        log.info("no compiled predictor in %s: scoring with the LightGBM booster", d)
        return None
    predictor = compiled_mod.CompiledPredictor.load(path)
    compiled_mod.check_parity(booster, predictor)  # raises: the two disagree
    X = compiled_mod.probe_rows(predictor.n_features, 200, seed=1)
    proba = np.asarray(booster.predict(X, num_threads=1), dtype=np.float64)
    if not np.allclose(1.0 / (1.0 + np.exp(-predictor.margin(X))), proba, rtol=0, atol=1e-12):
        log.info("compiled predictor in %s: output is not sigmoid(margin); using the booster", d)
        return None
    return predictor
