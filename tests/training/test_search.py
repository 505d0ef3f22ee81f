"""The bounded hyperparameter search, time-ordered folds, the early-stopping floor and the
plain baseline (training.search, training.fit, training.baselines, training.pipeline)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from training import baselines, search
from training.config import LightGBMParams, SearchSettings
from training.fit import fit_booster
from training.metrics import recall_at_rate
from training.pipeline import informative


def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A learnable problem with noise: fraud when a mix of two columns is high."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    logit = 2.5 * X[:, 0] - 1.5 * X[:, 1] + rng.normal(scale=1.5, size=n) - 5
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y, [f"f{i}" for i in range(5)]


SMALL = LightGBMParams(n_estimators=120, early_stopping_rounds=20, min_trees=30, n_jobs=1)


def test_candidates_start_with_the_defaults_and_are_the_same_for_a_seed():
    a = search.candidates(SMALL, 6, seed=3)
    assert a[0] == SMALL
    assert len(a) == 6
    assert len({tuple(sorted(vars(c).items())) for c in a}) == 6, "no trial twice"
    assert a == search.candidates(SMALL, 6, seed=3)
    assert a != search.candidates(SMALL, 6, seed=4)
    for c in a[1:]:
        assert 2 ** (c.max_depth - 1) >= c.num_leaves or c.max_depth >= SMALL.max_depth


def test_early_stopping_keeps_at_least_the_floor_of_trees():
    X, y, names = synthetic(3_000, seed=1)
    params = replace(SMALL, early_stopping_rounds=3, min_trees=40)
    curve: list[float] = []
    booster = fit_booster(X[:2_000], y[:2_000], X[2_000:], y[2_000:], names, params, 1, None, curve)
    assert booster.best_iteration >= 40
    assert curve[booster.best_iteration - 1] == max(curve[39 : len(curve)])


def test_progress_reports_the_best_validation_ap_so_far():
    X, y, names = synthetic(3_000, seed=2)
    seen: list[tuple[int, float]] = []
    fit_booster(
        X[:2_000],
        y[:2_000],
        X[2_000:],
        y[2_000:],
        names,
        SMALL,
        1,
        lambda i, a: seen.append((i, a)),
    )
    best = [a for _, a in seen]
    assert best == sorted(best), "the reported figure never goes down"
    assert [i for i, _ in seen] == list(range(1, len(seen) + 1))


def test_search_on_validation_is_deterministic_and_keeps_the_best_trial():
    X, y, names = synthetic(4_000, seed=3)
    settings = SearchSettings(trials=4, budget_seconds=600)
    args = (X[:3_000], y[:3_000], X[3_000:], y[3_000:], names, SMALL, 7, settings)
    said: list[str] = []
    a = search.on_validation(*args, say=said.append)
    b = search.on_validation(*args)
    assert len(a.trials) == 4
    assert a.params == max(a.trials, key=lambda t: t.score).params
    assert a.params == b.params
    assert a.rounds == b.rounds
    np.testing.assert_array_equal(a.holdout_raw, b.holdout_raw)
    assert sum("search " in line for line in said) == 4


def test_a_spent_budget_stops_the_search_after_the_first_trial_and_says_so():
    X, y, names = synthetic(3_000, seed=4)
    settings = SearchSettings(trials=5, budget_seconds=1e-9)
    said: list[str] = []
    sel = search.on_validation(
        X[:2_000], y[:2_000], X[2_000:], y[2_000:], names, SMALL, 7, settings, say=said.append
    )
    assert len(sel.trials) == 1
    assert sel.params == SMALL, "the defaults always run"
    assert sel.cut_by_budget
    assert any("time budget" in line for line in said)


def test_the_search_samples_genuine_rows_but_keeps_every_fraud():
    y = np.zeros(10_000, dtype=int)
    y[::97] = 1
    rows = search.sample_rows(y, 2_000, seed=1)
    assert len(rows) == 2_000
    assert set(np.flatnonzero(y == 1)) <= set(rows)
    np.testing.assert_array_equal(rows, search.sample_rows(y, 2_000, seed=1))
    np.testing.assert_array_equal(search.sample_rows(y, 20_000, seed=1), np.arange(10_000))


def test_folds_choose_the_number_of_trees_and_calibrate_out_of_fold():
    X, y, names = synthetic(4_000, seed=5)
    ts = np.arange(4_000)
    sel = search.by_folds(X, y, ts, names, SMALL, 7, SearchSettings(trials=2, budget_seconds=600))
    assert sel.method == "folds"
    assert SMALL.min_trees <= sel.rounds <= SMALL.n_estimators
    assert sel.booster.current_iteration() == sel.rounds, "the refit grows the chosen rounds"
    # out-of-fold rows are the last three quarters, each scored by a model that never saw it
    np.testing.assert_array_equal(np.sort(sel.holdout_rows), np.arange(1_000, 4_000))
    assert len(sel.holdout_raw) == 3_000


def test_folds_with_too_few_frauds_say_the_minimum_and_why():
    X, y, names = synthetic(800, seed=6)
    y = np.zeros_like(y)
    y[10] = 1
    with pytest.raises(ValueError, match=r"holds 1 known fraud.*time-ordered folds.*>= 8 frauds"):
        search.by_folds(X, y, np.arange(800), names, SMALL, 7, SearchSettings(trials=1))


def test_informative_drops_constant_empty_and_duplicated_columns():
    rng = np.random.default_rng(0)
    a = rng.normal(size=100)
    some_nan = a.copy()
    some_nan[:10] = np.nan
    const_with_nan = np.where(np.arange(100) < 50, 1.0, np.nan)
    X = np.column_stack([a, np.ones(100), np.full(100, np.nan), a, some_nan, const_with_nan])
    assert informative(X) == [0, 4, 5], "missingness alone still tells something"


def test_recall_at_a_review_rate_counts_frauds_in_the_top_share():
    score = np.arange(100, dtype=float)
    y = np.zeros(100, dtype=int)
    y[[99, 98, 50]] = 1
    assert recall_at_rate(score, y, 0.02) == pytest.approx(2 / 3)
    assert recall_at_rate(score, y, 0.01) == pytest.approx(1 / 3)


def test_the_plain_baseline_reads_raw_columns_only():
    frame = pd.DataFrame(
        {
            "transaction_id": ["a", "b", "c"],
            "timestamp": pd.to_datetime(
                ["2024-01-01 03:00", "2024-01-01 15:00", "2024-01-02 00:00"], utc=True
            ),
            "card_id": ["c1", "c1", "c2"],
            "customer_id": ["u1", "u1", "u2"],
            "merchant_id": ["m1", "m2", "m1"],
            "amount": [1.0, 2.0, 3.0],
            "currency": ["EUR"] * 3,
            "is_fraud": pd.array([0, 1, 0], dtype="Int8"),
            "label_time": pd.to_datetime([None, "2024-01-03", None], utc=True),
        }
    )
    raw = baselines.plain_columns(frame)
    assert list(raw.columns) == ["hour", "merchant_id", "amount", "currency"]
    assert raw["hour"].tolist() == [3.0, 15.0, 0.0]


class _CapturedError(Exception):
    pass


def test_the_final_model_is_refitted_on_fit_and_validation_with_the_chosen_rounds(
    frame, monkeypatch
):
    from training import pipeline
    from training.config import TrainConfig
    from training.split import label_knowable

    seen: dict[str, object] = {}

    def capture(X, y, names, params, seed, rounds):
        seen.update(rows=len(y), frauds=int(np.sum(y)), rounds=rounds)
        raise _CapturedError

    monkeypatch.setattr(pipeline, "fit_rounds", capture)
    config = TrainConfig(search=SearchSettings(trials=1))
    final = frame.drop(columns=["label_time"])  # final labels: validation has enough frauds
    with pytest.raises(_CapturedError):
        pipeline.train(final, config)
    frame = final
    delay = pd.Timedelta(days=config.label_delay_days)
    split = pipeline.plan(frame["timestamp"], delay)
    parts = pipeline.part_of(frame["timestamp"], split)
    knowable = label_knowable(frame, split.test_start, delay)
    both = np.isin(parts, ["train", "valid"]) & knowable
    assert seen["rows"] == both.sum(), "fit and validation payments whose labels are known"
    assert seen["rounds"] >= config.lightgbm.min_trees


def test_without_refit_the_model_is_the_one_chosen_on_validation(frame, monkeypatch):
    from training import pipeline
    from training.config import TrainConfig

    def refuse(*args, **kwargs):
        raise AssertionError("no refit expected")

    monkeypatch.setattr(pipeline, "fit_rounds", refuse)
    final = frame.drop(columns=["label_time"])
    result = pipeline.train(final, TrainConfig(search=SearchSettings(trials=1), refit=False))
    assert result.model.metadata["refit_on_validation"] is False
    assert result.selection is not None
    assert result.model.booster is result.selection.booster
