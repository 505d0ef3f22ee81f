"""Train, calibrate, set thresholds, compare with baselines: data in, results out (no I/O)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from features.batch import compute
from features.registry import available, feature_set_version
from training import baselines, drift, thresholds
from training.config import TrainConfig
from training.dask_fit import DaskSettings, fit_booster_dask
from training.fit import fit_booster, fit_calibration, matrix
from training.metrics import evaluate, top_k_mask
from training.model import RiskModel
from training.split import Split, known_labels, part_of, plan

Progress = Callable[[str], None]


@dataclass
class TrainResult:
    model: RiskModel
    split: Split
    metrics: dict[str, dict[str, float]]  # policy -> metric -> value (test period)
    tradeoff: list[dict[str, float]]
    test_scores: pd.DataFrame  # transaction_id, score, label
    features: pd.DataFrame  # the full feature table (for plots / drift profiles)
    parts: np.ndarray
    dataset_digest: str
    info: dict[str, Any] = field(default_factory=dict)
    rule_threshold: float = float("inf")
    shap_sample: tuple[np.ndarray, np.ndarray] | None = None  # (contributions, X) for a plot
    curves: dict[str, np.ndarray] = field(default_factory=dict)


def dataset_digest(frame: pd.DataFrame) -> str:
    """Identifies the exact data a model saw (ids, times, amounts and labels)."""
    cols = [
        c for c in ("transaction_id", "timestamp", "amount", "is_fraud", "label_time") if c in frame
    ]
    hashed = pd.util.hash_pandas_object(frame[cols], index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()[:16]


def _days(ts: pd.Series) -> float:
    if len(ts) == 0:
        return 1.0
    return max((ts.max() - ts.min()).total_seconds() / 86_400, 1.0)


def train(
    frame: pd.DataFrame,
    config: TrainConfig,
    *,
    periods: dict[str, pd.Timestamp | None] | None = None,
    progress: Progress | None = None,
    round_progress: Callable[[int, float], None] | None = None,
    dask: DaskSettings | None = None,
) -> TrainResult:
    """The whole training job on a validated contract frame with labels.

    With `dask`, the booster is fitted on a Dask cluster (`training.dask_fit`); the rest is the
    same. Call it from a function (the CLI), never at import time of a `__main__` module.
    """
    say = progress or (lambda _msg: None)
    if "is_fraud" not in frame.columns or frame["is_fraud"].notna().sum() == 0:
        raise ValueError("the data has no labels (is_fraud): nothing to train on")
    frame = frame.reset_index(drop=True)
    label_delay = pd.Timedelta(days=config.label_delay_days)
    split = plan(
        frame["timestamp"],
        label_delay,
        test_share=config.test_share,
        valid_share=config.valid_share,
        **(periods or {}),
    )
    avail = available(frame.columns)
    say(f"features: {len(avail.features)} ({avail.summary().splitlines()[0]})")
    table = compute(frame, avail.features, progress=None)
    names = [f.name for f in avail.features]
    X_all = matrix(table[names].to_numpy())
    parts = part_of(frame["timestamp"], split)
    amount = frame["amount"].to_numpy(dtype=np.float64)
    tr, va, te = (parts == "train"), (parts == "valid"), (parts == "test")
    for name, mask in (("training", tr), ("validation", va), ("test", te)):
        if not mask.any():
            raise ValueError(f"the {name} period {split} holds no payments")
    y_fit = known_labels(frame, split.fit_known_by)[tr]
    y_valid = known_labels(frame, split.valid_known_by)[va]
    y_test = (frame["is_fraud"].to_numpy(dtype=np.float64, na_value=0.0) == 1)[te].astype(int)
    if y_fit.sum() == 0 or y_valid.sum() == 0:
        raise ValueError(
            "no fraud label known by the end of the training or validation period "
            f"(train {int(y_fit.sum())}, validation {int(y_valid.sum())}): more data or a shorter "
            "label delay is needed"
        )
    say(
        f"split: train {tr.sum():,} ({y_fit.sum()} fraud known) | valid {va.sum():,} "
        f"({y_valid.sum()}) | test {te.sum():,} ({y_test.sum()})"
    )

    fit_args = (X_all[tr], y_fit, X_all[va], y_valid, names, config.lightgbm, config.seed)
    if dask is None:
        booster = fit_booster(*fit_args, round_progress)
    else:
        booster = fit_booster_dask(
            *fit_args,
            n_workers=dask.n_workers,
            scheduler=dask.scheduler,
            progress=round_progress,
            say=say,
        )
    say(f"lightgbm: {booster.best_iteration or booster.current_iteration()} trees")
    raw_valid = np.asarray(booster.predict(X_all[va], num_threads=1))
    calibration = fit_calibration(raw_valid, y_valid)
    provisional = RiskModel(
        booster,
        tuple(names),
        feature_set_version(avail.features),
        calibration,
        thresholds.Thresholds(review=1.0, decline=thresholds.NEVER),
    )
    p_valid = provisional.predict_proba(X_all[va])
    p_test = provisional.predict_proba(X_all[te])
    valid_days = _days(frame.loc[va, "timestamp"])
    choice = thresholds.choose(p_valid, amount[va], valid_days, config.business)
    say(
        f"thresholds: review >= {choice.thresholds.review:.4f}, decline >= "
        f"{choice.thresholds.decline:.4f} (capacity {choice.capacity} reviews in validation)"
    )
    model = RiskModel(
        booster,
        tuple(names),
        provisional.feature_set_version,
        calibration,
        choice.thresholds,
        metadata={
            "label_delay_days": config.label_delay_days,
            "split": split.as_params(),
            "best_iteration": booster.best_iteration,
            "review_share": config.business.review_share,
        },
    )

    # Reference for drift: the model's inputs and scores over the training period.
    model.profile = drift.profile(table.loc[tr], names, model.predict_proba(X_all[tr]))

    test_frame = frame.loc[te]
    day = test_frame["timestamp"].dt.floor("D").to_numpy()
    card = test_frame["card_id"].to_numpy()
    decision = thresholds.apply(p_test, choice.thresholds, amount[te])
    flagged = decision != "approve"
    k_flag = int(flagged.sum())
    am_te = amount[te]
    k = config.card_k
    metrics: dict[str, dict[str, float]] = {}
    metrics["riskgate"] = evaluate(p_test, y_test, am_te, flagged, day, card, k)
    metrics["riskgate"]["review_rate"] = float((decision == "review").mean())
    metrics["riskgate"]["decline_rate"] = float((decision == "decline").mean())

    signals = {s: table.loc[te, s].to_numpy() for s in baselines.RULE_SIGNALS if s in table}
    rule_flags, rule_x, rule_score = baselines.rule_policy(am_te, signals, k_flag)
    metrics["rules"] = evaluate(
        rule_score, y_test, am_te, rule_flags, day, card, k, calibrated=False
    )
    metrics["rules"]["review_rate"] = float(rule_flags.mean())

    say("logistic regression baseline")
    lr = baselines.fit_logistic(X_all[tr], y_fit, config.seed)
    lr_cal = fit_calibration(baselines.predict_logistic(lr, X_all[va]), y_valid)
    p_lr = lr_cal.apply(baselines.predict_logistic(lr, X_all[te]))
    metrics["logistic"] = evaluate(p_lr, y_test, am_te, top_k_mask(p_lr, k_flag), day, card, k)
    metrics["logistic"]["review_rate"] = k_flag / max(len(p_lr), 1)

    tradeoff = thresholds.tradeoff_table(
        p_valid, amount[va], valid_days, p_test, y_test, am_te, config.business
    )
    scores = pd.DataFrame(
        {
            "transaction_id": test_frame["transaction_id"].to_numpy(),
            "score": p_test,
            "label": y_test,
        }
    )
    rng = np.random.default_rng(config.seed)
    sample = rng.choice(np.flatnonzero(te), size=min(2_000, int(te.sum())), replace=False)
    contrib = model.contributions(X_all[np.sort(sample)])
    return TrainResult(
        model=model,
        split=split,
        metrics=metrics,
        tradeoff=tradeoff,
        test_scores=scores,
        features=table,
        parts=parts,
        dataset_digest=dataset_digest(frame),
        info={
            "rows": len(frame),
            "train_rows": int(tr.sum()),
            "valid_rows": int(va.sum()),
            "test_rows": int(te.sum()),
            "skipped_groups": avail.skipped_groups(),
        },
        rule_threshold=rule_x,
        shap_sample=(contrib[:, :-1], X_all[np.sort(sample)]),
        curves={"y_test": y_test, "p_test": p_test, "p_logistic": p_lr, "rule_score": rule_score},
    )


def score_table(model: RiskModel, table: pd.DataFrame) -> np.ndarray:
    """A model's probabilities on a feature table that holds (at least) its features."""
    missing = [f for f in model.features if f not in table.columns]
    if missing:
        raise ValueError(f"feature table lacks {', '.join(missing)}")
    return model.predict_proba(matrix(table[list(model.features)].to_numpy()))
