"""LightGBM with early stopping on validation average precision, then calibration. No I/O."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import lightgbm as lgb
import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from training.config import LightGBMParams
from training.model import Calibration

MIN_POSITIVES_FOR_ISOTONIC = 80


def matrix(frame_values: np.ndarray) -> np.ndarray:
    """The layout LightGBM predicts fastest on: C-contiguous float64."""
    return np.ascontiguousarray(frame_values, dtype=np.float64)


def lgb_params(params: LightGBMParams, seed: int) -> dict[str, Any]:
    """`training.config` names -> LightGBM's, deterministic for a seed and a thread count."""
    p = asdict(params)
    return {
        "objective": "binary",
        "metric": "average_precision",
        "learning_rate": p["learning_rate"],
        "num_leaves": p["num_leaves"],
        "max_depth": p["max_depth"],
        "min_child_samples": p["min_child_samples"],
        "bagging_fraction": p["subsample"],
        "bagging_freq": p["subsample_freq"],
        "feature_fraction": p["colsample_bytree"],
        "lambda_l2": p["reg_lambda"],
        "scale_pos_weight": p["scale_pos_weight"],
        "num_threads": p["n_jobs"],
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "verbosity": -1,
    }


class _BestAfterFloor:
    """Early stopping that keeps the best round at or after `floor` trees.

    A validation period with few frauds makes average precision jump in the first rounds, so
    plain early stopping kept 11-12 barely trained trees; here the curve is followed for at
    least `floor` rounds and the best round among them (or later) is kept.
    """

    def __init__(
        self,
        floor: int,
        patience: int,
        progress: Callable[[int, float], None] | None,
    ) -> None:
        self.floor = max(1, floor)
        self.patience = patience
        self.progress = progress
        self.best_i = -1
        self.best_ap = -math.inf
        self.best_any = -math.inf
        self.best_result: list[Any] = []
        self.curve: list[float] = []
        self.order = 30  # after lgb's own callbacks

    def __call__(self, env: lgb.callback.CallbackEnv) -> None:
        if not env.evaluation_result_list:
            return
        i = env.iteration  # 0-based
        ap = float(env.evaluation_result_list[0][2])
        self.curve.append(ap)
        self.best_any = max(self.best_any, ap)
        if (i + 1 >= self.floor or i + 1 == env.end_iteration) and ap > self.best_ap:
            self.best_i, self.best_ap = i, ap
            self.best_result = list(env.evaluation_result_list)
        if self.progress is not None:
            self.progress(i + 1, self.best_any)
        if self.best_i >= 0 and i - self.best_i >= self.patience and i + 1 >= self.floor:
            raise lgb.callback.EarlyStopException(self.best_i, self.best_result)


def fit_booster(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_valid: np.ndarray,
    y_valid: np.ndarray,
    names: list[str],
    params: LightGBMParams,
    seed: int,
    progress: Callable[[int, float], None] | None = None,
    curve: list[float] | None = None,
) -> lgb.Booster:
    """Deterministic for a seed: the booster cut to its best validation round (>= min_trees).

    `progress(round, best validation AP so far)` is called after every round; `curve`, when
    given, receives the validation AP of every round.
    """
    train = lgb.Dataset(X_train, label=y_train, feature_name=names, free_raw_data=False)
    valid = lgb.Dataset(X_valid, label=y_valid, reference=train)
    stop = _BestAfterFloor(
        min(params.min_trees, params.n_estimators), params.early_stopping_rounds, progress
    )
    booster = lgb.train(
        lgb_params(params, seed), train, params.n_estimators, valid_sets=[valid], callbacks=[stop]
    )
    if stop.best_i >= 0:
        booster.best_iteration = stop.best_i + 1
    if curve is not None:
        curve.extend(stop.curve)
    return booster


def fit_rounds(
    X_train: np.ndarray,
    y_train: np.ndarray,
    names: list[str],
    params: LightGBMParams,
    seed: int,
    rounds: int,
) -> lgb.Booster:
    """A fixed number of rounds, no validation: the refit after time-ordered folds."""
    train = lgb.Dataset(X_train, label=y_train, feature_name=names, free_raw_data=False)
    p = lgb_params(params, seed)
    p.pop("metric")
    return lgb.train(p, train, max(1, rounds))


def fit_calibration(raw: np.ndarray, y: np.ndarray) -> Calibration:
    """Isotonic when validation has enough fraud to shape the curve; Platt scaling otherwise."""
    y = np.asarray(y, dtype=np.int64)
    if y.sum() >= MIN_POSITIVES_FOR_ISOTONIC:
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, y)
        return Calibration(
            "isotonic",
            x=tuple(float(v) for v in iso.X_thresholds_),
            y=tuple(float(v) for v in iso.y_thresholds_),
        )
    logit = np.log(np.clip(raw, 1e-12, 1 - 1e-12) / np.clip(1 - raw, 1e-12, 1.0))
    lr = LogisticRegression(C=1e6).fit(logit.reshape(-1, 1), y)
    return Calibration("platt", a=float(lr.coef_[0, 0]), b=float(lr.intercept_[0]))
