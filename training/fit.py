"""LightGBM with early stopping on validation average precision, then calibration. No I/O."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict

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


def fit_booster(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_valid: np.ndarray,
    y_valid: np.ndarray,
    names: list[str],
    params: LightGBMParams,
    seed: int,
    progress: Callable[[int, float], None] | None = None,
) -> lgb.Booster:
    """Deterministic for a seed (single thread, deterministic mode, fixed bagging seed)."""
    p = asdict(params)
    rounds = p.pop("n_estimators")
    stop = p.pop("early_stopping_rounds")
    lgb_params = {
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
    train = lgb.Dataset(X_train, label=y_train, feature_name=names, free_raw_data=False)
    valid = lgb.Dataset(X_valid, label=y_valid, reference=train)
    callbacks: list[Callable[..., None]] = [lgb.early_stopping(stop, verbose=False)]
    if progress is not None:

        def report(env: lgb.callback.CallbackEnv) -> None:
            if env.evaluation_result_list:
                progress(env.iteration + 1, float(env.evaluation_result_list[0][2]))

        callbacks.append(report)
    return lgb.train(lgb_params, train, rounds, valid_sets=[valid], callbacks=callbacks)


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
