"""The compiled predictor (training/compiled.py) equals LightGBM on raw margins, the artifact
carries it, an artifact whose two disagree is refused, an old artifact falls back to the booster."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from training import compiled
from training.model import RiskModel
from training.pipeline import TrainResult

ROWS = 10_000


def _small_booster(seed: int) -> lgb.Booster:
    """A booster with missing values and a categorical feature (the splits the simulator's
    models may not all have)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(3_000, 6))
    X[:, 5] = rng.integers(0, 8, 3_000)
    X[rng.random(X.shape) < 0.1] = np.nan
    y = ((np.nan_to_num(X[:, 0]) + (X[:, 5] == 3) + rng.normal(size=3_000)) > 1).astype(int)
    data = lgb.Dataset(X, y, categorical_feature=[5])
    return lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 15}, data, 40)


def _rows(booster: lgb.Booster, real: np.ndarray | None = None) -> np.ndarray:
    X = compiled.probe_rows(booster.num_feature(), ROWS, seed=3)
    if real is not None:
        X[: min(len(real), ROWS // 2)] = real[: ROWS // 2]
    return X


def test_trained_model_compiled_margins_equal_lightgbm(trained: TrainResult, tmp_path: Path):
    model = trained.model
    d = model.save(tmp_path / "m", compile=True)
    loaded = RiskModel.load(d)
    assert loaded.compiled is not None
    real = trained.features.loc[:, list(model.features)].to_numpy(np.float64)
    X = _rows(model.booster, real)
    got = loaded.compiled.margin(X)
    want = model.booster.predict(X, raw_score=True)
    assert np.max(np.abs(got - want)) <= 1e-9
    # and the probability the service calibrates is the booster's
    assert np.allclose(loaded.predict_proba(X[:50]), model.predict_proba(X[:50]), atol=1e-12)


def test_categorical_and_missing_margins_equal_lightgbm(tmp_path: Path):
    booster = _small_booster(0)
    predictor = compiled.CompiledPredictor.load(compiled.compile_booster(booster, tmp_path))
    X = _rows(booster)
    X[:, 5] = np.where(np.isnan(X[:, 5]), np.nan, np.abs(X[:, 5]) % 9)
    assert compiled.check_parity(booster, predictor, X) <= 1e-9


def test_artifact_whose_compiled_predictor_disagrees_is_refused(
    trained: TrainResult, tmp_path: Path
):
    d = trained.model.save(tmp_path / "m")
    other = _small_booster(1)
    # another model's library, with the artifact's feature count: a different booster
    rng = np.random.default_rng(2)
    n = trained.model.booster.num_feature()
    X = rng.normal(size=(500, n))
    y = (X[:, 0] > 0).astype(int)
    wrong = lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(X, y), 5)
    compiled.compile_booster(wrong, d)
    with pytest.raises(compiled.CompiledMismatchError, match="disagrees with its booster"):
        RiskModel.load(d)
    d2 = trained.model.save(tmp_path / "m2")
    compiled.compile_booster(other, d2)  # another feature count
    with pytest.raises(compiled.CompiledMismatchError, match="features"):
        RiskModel.load(d2)


def test_old_artifact_falls_back_to_the_booster(
    trained: TrainResult, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    d = trained.model.save(tmp_path / "m")
    assert not (d / compiled.LIBRARY).exists()
    with caplog.at_level(logging.INFO, logger="training.model"):
        loaded = RiskModel.load(d)
    assert loaded.compiled is None
    assert "scoring with the LightGBM booster" in caplog.text
    X = _rows(loaded.booster)[:20]
    assert np.allclose(loaded.predict_proba(X), trained.model.predict_proba(X), atol=0)


def test_saving_a_loaded_model_keeps_its_compiled_predictor(trained: TrainResult, tmp_path: Path):
    first = trained.model.save(tmp_path / "a", compile=True)
    again = RiskModel.load(first).save(tmp_path / "b")
    assert (again / compiled.LIBRARY).exists()
    shutil.rmtree(first)
    assert RiskModel.load(again).compiled is not None


def test_reused_buffers_give_each_row_its_own_margin(tmp_path: Path):
    """One row at a time (the serving path, buffers reused call after call) equals the rows in
    one call, whatever was missing in the row before; a kept result is not changed later."""
    booster = _small_booster(1)
    predictor = compiled.CompiledPredictor.load(compiled.compile_booster(booster, tmp_path))
    X = _rows(booster)[:300]
    X[:, 5] = np.where(np.isnan(X[:, 5]), np.nan, np.abs(X[:, 5]) % 9)  # valid categories
    X[::2, :3] = np.nan  # alternate rows with and without missing values
    want = booster.predict(X, raw_score=True)
    kept = [predictor.margin(X[i : i + 1]) for i in range(len(X))]
    copies = [k.copy() for k in kept]
    for _ in range(3):
        predictor.margin(X[::-1])
    got = np.concatenate(kept)
    assert np.max(np.abs(got - want)) <= 1e-9
    for k, c in zip(kept, copies, strict=True):
        np.testing.assert_array_equal(k, c)


def test_the_compiled_call_keeps_the_gil(tmp_path: Path):
    """A few us of C: releasing the GIL would only make the scoring thread wait to win it back
    from the server's event loop."""
    import ctypes

    predictor = compiled.CompiledPredictor.load(
        compiled.compile_booster(_small_booster(2), tmp_path)
    )
    assert predictor._lib.predict._flags_ & ctypes._FUNCFLAG_PYTHONAPI  # type: ignore[attr-defined]
