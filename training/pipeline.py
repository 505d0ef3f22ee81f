"""Train, calibrate, set thresholds, compare with baselines: data in, results out (no I/O)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from features.batch import compute, to_ns
from features.registry import available, feature_set_version
from features.registry import select as select_features
from training import baselines, drift, search, thresholds
from training.config import TrainConfig
from training.dask_fit import DaskSettings, fit_booster_dask
from training.fit import fit_calibration, fit_rounds, matrix
from training.metrics import evaluate, top_k_mask
from training.model import RiskModel
from training.split import (
    FOLDS,
    Period,
    Split,
    describe,
    folds_over,
    known_labels,
    label_knowable,
    part_of,
    plan,
)

Progress = Callable[[str], None]
PROFILE_ROWS = 50_000
# Fewer known frauds than this in an automatic validation period: folds choose the trees.
MIN_VALID_FRAUDS = 20  # rows of the fitting period kept as the drift reference


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
    periods: list[Period] = field(default_factory=list)
    selection: search.Selection | None = None


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


def informative(X: np.ndarray) -> list[int]:
    """Columns worth fitting on: not all missing, not one constant, not a copy of an earlier
    column (a file whose card is its customer makes every card feature a customer feature).
    A narrower matrix keeps a wide registry from diluting column sampling on small data."""
    keep: list[int] = []
    seen: set[bytes] = set()
    for j in range(X.shape[1]):
        col = np.ascontiguousarray(X[:, j])
        nan = np.isnan(col)
        if nan.all():
            continue
        finite = col[~nan]
        if not nan.any() and finite.min() == finite.max():
            continue
        digest = hashlib.sha1(col.tobytes()).digest()
        if digest in seen:
            continue
        seen.add(digest)
        keep.append(j)
    return keep


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

    Labels are taken as known at deployment (`labels_as_of`, default the test start). With
    `dask`, the booster is fitted on a Dask cluster (`training.dask_fit`) with the configured
    parameters (no search). Call it from a function (the CLI), never at import time.
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
    if dask is not None and split.selection == "folds":
        raise ValueError(
            "--dask needs a validation period (--valid-start/--valid-end or a longer training "
            "period): the Dask fit does not run time-ordered folds"
        )
    parts = part_of(frame["timestamp"], split)
    tr, va, te = (parts == "train"), (parts == "valid"), (parts == "test")
    if not te.any():
        raise ValueError(
            f"the test period {split.test_start} .. {split.test_end} holds no payments"
        )
    knowable = label_knowable(frame, split.known_by, label_delay)
    fit, valid = tr & knowable, va & knowable
    y_known = known_labels(frame, split.known_by)
    explicit_valid = bool(periods and periods.get("valid_start") is not None)
    if (
        split.selection == "validation"
        and not explicit_valid
        and dask is None
        and int(y_known[valid].sum()) < MIN_VALID_FRAUDS
    ):
        say(
            f"validation holds {int(y_known[valid].sum())} known frauds (< {MIN_VALID_FRAUDS}): "
            "fitting the whole training period and choosing the trees by time-ordered folds"
        )
        split = folds_over(
            split.train_start,
            split.valid_end,
            split.test_start,
            split.test_end,
            split.labels_as_of,
        )
        parts = part_of(frame["timestamp"], split)
        tr, va = (parts == "train"), (parts == "valid")
        fit, valid = tr & knowable, va & knowable
    table_periods = describe(frame, split, label_delay)
    for line in period_lines(table_periods, split):
        say(line)
    if not fit.any():
        raise ValueError(
            f"the fitting period {split.train_start} .. {split.train_end} holds no payment whose "
            f"label is known by {split.known_by} (labels as of; label delay {label_delay})"
        )
    if split.selection == "validation" and not valid.any():
        raise ValueError(
            f"the validation period {split.valid_start} .. {split.valid_end} holds no payment "
            f"whose label is known by {split.known_by}"
        )
    y_fit, y_valid = y_known[fit], y_known[valid]
    if y_fit.sum() == 0 or (split.selection == "validation" and y_valid.sum() == 0):
        raise ValueError(
            f"no fraud label known by {split.known_by} in the fitting or validation period "
            f"(fit {int(y_fit.sum())}, validation {int(y_valid.sum())}): more data, a later "
            "--labels-as-of or a shorter label delay is needed"
        )

    avail = available(frame.columns)
    say(f"features: {len(avail.features)} ({avail.summary().splitlines()[0]})")
    table = compute(frame, avail.features, progress=None)
    all_names = [f.name for f in avail.features]
    X_every = matrix(table[all_names].to_numpy())
    keep = informative(X_every[fit])
    names = [all_names[j] for j in keep]
    dropped = len(all_names) - len(names)
    if dropped:
        say(f"features: {len(names)} used, {dropped} constant, empty or duplicated on the fit rows")
    X_all = np.ascontiguousarray(X_every[:, keep])
    declared = select_features(names)
    amount = frame["amount"].to_numpy(dtype=np.float64)
    y_test = (frame["is_fraud"].to_numpy(dtype=np.float64, na_value=0.0) == 1)[te].astype(int)

    sel = _select(frame, X_all, y_known, fit, valid, names, config, dask, say, round_progress)
    if split.selection == "validation":
        hold = np.flatnonzero(valid)[sel.holdout_rows]
    else:
        hold = np.flatnonzero(fit)[sel.holdout_rows]
    raw_hold, y_hold = sel.holdout_raw, y_known[hold]
    say(
        f"lightgbm: kept iteration {sel.rounds} "
        f"({'best validation' if sel.method == 'validation' else 'best mean out-of-fold'} AP "
        f"{max((t.score for t in sel.trials), default=float('nan')):.4f}; "
        f"{sel.params.num_leaves} leaves, learning rate {sel.params.learning_rate:g})"
    )
    booster = sel.booster
    refitted = split.selection == "validation" and config.refit and dask is None
    if refitted:
        # The validation period is the newest labelled data: refit on fit + validation with the
        # chosen parameters and rounds (on sparkov test AP 0.944 -> 0.962). Calibration and
        # thresholds stay those measured on validation by the model that had not seen it.
        both = fit | valid
        say(f"refit on fit + validation ({int(both.sum()):,} payments, {sel.rounds} trees)")
        booster = fit_rounds(X_all[both], y_known[both], names, sel.params, config.seed, sel.rounds)
    calibration = fit_calibration(raw_hold, y_hold)
    p_hold = calibration.apply(raw_hold)
    hold_days = _days(frame.loc[hold, "timestamp"])
    choice = thresholds.choose(p_hold, amount[hold], hold_days, config.business)
    model = RiskModel(
        booster,
        tuple(names),
        feature_set_version(declared),
        calibration,
        choice.thresholds,
        metadata={
            "label_delay_days": config.label_delay_days,
            "split": split.as_params(),
            "best_iteration": sel.rounds,
            "selection": sel.method,
            "refit_on_validation": refitted,
            "lightgbm": asdict(sel.params),
            "review_share": config.business.review_share,
        },
    )
    say(describe_thresholds(choice.thresholds, choice.capacity, hold_days))
    threads = config.lightgbm.n_jobs
    p_test = model.predict_proba(X_all[te], threads)

    # Reference for drift: the model's inputs and scores over (a sample of) the fitting period.
    rng = np.random.default_rng(config.seed)
    ref = np.flatnonzero(tr)
    if len(ref) > PROFILE_ROWS:
        ref = np.sort(rng.choice(ref, size=PROFILE_ROWS, replace=False))
    model.profile = drift.profile(table.loc[ref], names, model.predict_proba(X_all[ref], threads))

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

    say("baselines: plain LightGBM on the raw columns, rules, logistic regression")
    raw_cols = baselines.plain_columns(frame)
    plain, levels = baselines.fit_plain_lightgbm(raw_cols.loc[fit], y_fit, config.seed)
    p_plain = baselines.predict_plain_lightgbm(plain, levels, raw_cols.loc[te])
    metrics["plain_lightgbm"] = evaluate(
        p_plain, y_test, am_te, top_k_mask(p_plain, k_flag), day, card, k, calibrated=False
    )
    metrics["plain_lightgbm"]["review_rate"] = k_flag / max(len(p_plain), 1)

    signals = {s: table.loc[te, s].to_numpy() for s in baselines.RULE_SIGNALS if s in table}
    rule_flags, rule_x, rule_score = baselines.rule_policy(am_te, signals, k_flag)
    metrics["rules"] = evaluate(
        rule_score, y_test, am_te, rule_flags, day, card, k, calibrated=False
    )
    metrics["rules"]["review_rate"] = float(rule_flags.mean())

    lr_rows = np.flatnonzero(fit)[search.sample_rows(y_fit, config.search.max_rows, config.seed)]
    lr = baselines.fit_logistic(X_all[lr_rows], y_known[lr_rows], config.seed)
    lr_cal = fit_calibration(baselines.predict_logistic(lr, X_all[hold]), y_hold)
    p_lr = lr_cal.apply(baselines.predict_logistic(lr, X_all[te]))
    metrics["logistic"] = evaluate(p_lr, y_test, am_te, top_k_mask(p_lr, k_flag), day, card, k)
    metrics["logistic"]["review_rate"] = k_flag / max(len(p_lr), 1)

    tradeoff = thresholds.tradeoff_table(
        p_hold, amount[hold], hold_days, p_test, y_test, am_te, config.business
    )
    scores = pd.DataFrame(
        {
            "transaction_id": test_frame["transaction_id"].to_numpy(),
            "score": p_test,
            "label": y_test,
        }
    )
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
            "fit_rows": int(fit.sum()),
            "valid_rows": int(valid.sum()),
            "test_rows": int(te.sum()),
            "skipped_groups": avail.skipped_groups(),
            "features_used": len(names),
            "features_dropped": dropped,
        },
        rule_threshold=rule_x,
        shap_sample=(contrib[:, :-1], X_all[np.sort(sample)]),
        curves={
            "y_test": y_test,
            "p_test": p_test,
            "p_logistic": p_lr,
            "p_plain": p_plain,
            "rule_score": rule_score,
            "p_hold": p_hold,  # calibrated held-out scores the thresholds were chosen on
            "hold_rows": hold,  # their rows (validation, or out of fold)
        },
        periods=table_periods,
        selection=sel,
    )


def _select(
    frame: pd.DataFrame,
    X_all: np.ndarray,
    y_known: np.ndarray,
    fit: np.ndarray,
    valid: np.ndarray,
    names: list[str],
    config: TrainConfig,
    dask: DaskSettings | None,
    say: Progress,
    round_progress: Callable[[int, float], None] | None,
) -> search.Selection:
    """Hyperparameters and number of trees: on validation, by folds, or (Dask) as configured."""
    y_fit, y_valid = y_known[fit], y_known[valid]
    if dask is not None:
        booster = fit_booster_dask(
            X_all[fit],
            y_fit,
            X_all[valid],
            y_valid,
            names,
            config.lightgbm,
            config.seed,
            n_workers=dask.n_workers,
            scheduler=dask.scheduler,
            progress=round_progress,
            say=say,
        )
        raw = np.asarray(booster.predict(X_all[valid], num_threads=1))
        kept = booster.best_iteration or booster.current_iteration()
        trial = search.Trial(config.lightgbm, float("nan"), kept, 0.0)
        return search.Selection(
            config.lightgbm, kept, booster, raw, np.arange(len(y_valid)), [trial]
        )
    if valid.any():
        return search.on_validation(
            X_all[fit],
            y_fit,
            X_all[valid],
            y_valid,
            names,
            config.lightgbm,
            config.seed,
            config.search,
            say=say,
            rounds=round_progress,
        )
    say(f"no validation period: the number of trees comes from {FOLDS} time-ordered folds")
    return search.by_folds(
        X_all[fit],
        y_fit,
        to_ns(frame.loc[fit, "timestamp"]),
        names,
        config.lightgbm,
        config.seed,
        config.search,
        say=say,
        rounds=round_progress,
    )


def period_lines(rows: list[Period], split: Split) -> list[str]:
    """The periods table printed before fitting (the periods actually used, inclusive days)."""
    out = [
        f"periods (labels as known at {split.known_by:%Y-%m-%d %H:%M} UTC; "
        f"model chosen by {'validation' if split.selection == 'validation' else 'folds'}):"
    ]
    out.append(
        f"  {'part':<11} {'from':<16} {'to (excl.)':<16} {'rows':>10} {'fraud':>7} "
        f"{'used':>10} {'fraud used':>10}"
    )
    for r in rows:
        used = f"{r.used:>10,} {r.fraud_known:>10,}" if r.name != "gap" else f"{'-':>10} {'-':>10}"
        out.append(
            f"  {r.name:<11} {r.start:%Y-%m-%d %H:%M} {r.end:%Y-%m-%d %H:%M} {r.rows:>10,} "
            f"{r.fraud:>7,} {used}"
        )
    return out


def describe_thresholds(t: thresholds.Thresholds, capacity: int, days: float) -> str:
    """The thresholds in words, with their unit."""
    if t.decline > 1.0:
        decline = "decline: never (no payment reaches p >= 1)"
    else:
        decline = f"decline when p >= {t.decline:.4f}"
    if t.review_by == "saving":
        review = f"review when the expected saving of a review >= {t.review:,.2f} (money)"
    else:
        review = f"review when p >= {t.review:.4f}"
    per_day = capacity / max(days, 1e-9)
    return f"thresholds: {review}; {decline} (capacity about {per_day:,.0f} reviews a day)"


def score_table(model: RiskModel, table: pd.DataFrame) -> np.ndarray:
    """A model's probabilities on a feature table that holds (at least) its features."""
    missing = [f for f in model.features if f not in table.columns]
    if missing:
        raise ValueError(f"feature table lacks {', '.join(missing)}")
    return model.predict_proba(matrix(table[list(model.features)].to_numpy()))
