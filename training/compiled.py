"""The booster compiled to C (Treelite + TL2cgen, gcc) for serving: one row scores in a few us
where LightGBM's Python predict takes ~40 us. The shared library travels in the artifact beside
the booster; SHAP stays on the booster. A library that disagrees with its booster is refused.

The generated `predict(union Entry*, int pred_margin, double*)` is called through ctypes on a
buffer reused per row; a missing value is an Entry whose int member is -1 (TL2cgen's own
convention, as its DMatrix does it).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import lightgbm as lgb
import numpy as np

LIBRARY = "compiled.so"
TOLERANCE = 1e-9  # raw margin, compiled vs LightGBM
PROBE_ROWS = 2_000  # rows the load-time check compares


class CompiledMismatchError(RuntimeError):
    """The compiled predictor's raw margins differ from its booster's: refuse the artifact."""


def compile_booster(booster: lgb.Booster, directory: Path) -> Path:
    """Compile `booster` to directory/compiled.so (gcc; a few seconds per hundred trees)."""
    import tl2cgen
    import treelite

    directory.mkdir(parents=True, exist_ok=True)
    target = directory / LIBRARY
    tl_model = treelite.frontend.from_lightgbm(booster)
    with tempfile.TemporaryDirectory() as tmp:
        built = Path(tmp) / LIBRARY
        tl2cgen.export_lib(
            tl_model, toolchain="gcc", libpath=str(built), params={"parallel_comp": 2}
        )
        staged = directory / f".{LIBRARY}.tmp"
        shutil.copyfile(built, staged)
        # a new file, never rewritten in place: a process may have the old one mapped
        os.replace(staged, target)
    return target


@dataclass
class CompiledPredictor:
    """Raw margins from the compiled library, one row per C call, no allocation per row."""

    path: Path
    n_features: int
    _lib: ctypes.CDLL = field(repr=False)
    _buf: np.ndarray = field(repr=False)
    _out: np.ndarray = field(repr=False)

    @classmethod
    def load(cls, path: Path) -> CompiledPredictor:
        lib = ctypes.CDLL(str(path))
        lib.predict.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
        lib.predict.restype = None
        lib.get_num_feature.restype = ctypes.c_int32
        n = int(lib.get_num_feature())
        # LightGBM binary: one output; room for a few in case of a multi-output build
        return cls(path, n, lib, np.empty(n, dtype=np.float64), np.zeros(4, dtype=np.float64))

    def margin(self, X: np.ndarray) -> np.ndarray:
        """Raw margins (log-odds) of the rows of X (n x n_features, float64)."""
        X = np.asarray(X, dtype=np.float64)
        out = np.empty(X.shape[0], dtype=np.float64)
        buf, res = self._buf, self._out
        words = buf.view(np.int32)[0::2]  # the Entry's int member (little-endian low word)
        bp, rp = buf.ctypes.data, res.ctypes.data
        predict = self._lib.predict
        for i in range(X.shape[0]):
            row = X[i]
            buf[:] = row
            missing = np.isnan(row)
            if missing.any():
                words[missing] = -1
            res[0] = 0.0  # the generated code adds to its output
            predict(bp, 1, rp)
            out[i] = res[0]
        return out


def probe_rows(n_features: int, n: int = PROBE_ROWS, seed: int = 0) -> np.ndarray:
    """Rows for the parity check: zeros, signed magnitudes over many scales, ~15% missing."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_features)) * 10.0 ** rng.integers(-3, 6, (n, n_features))
    X[rng.random((n, n_features)) < 0.15] = np.nan
    X[rng.random((n, n_features)) < 0.1] = 0.0
    return np.ascontiguousarray(X)


def check_parity(
    booster: lgb.Booster, compiled: CompiledPredictor, X: np.ndarray | None = None
) -> float:
    """Largest |compiled - LightGBM| raw margin over X (default: probe rows); raises
    CompiledMismatchError above TOLERANCE or when the feature counts differ."""
    if compiled.n_features != booster.num_feature():
        raise CompiledMismatchError(
            f"compiled predictor {compiled.path} takes {compiled.n_features} features, "
            f"the booster {booster.num_feature()}: recompile the artifact"
        )
    X = probe_rows(compiled.n_features) if X is None else np.ascontiguousarray(X, np.float64)
    expected = np.asarray(booster.predict(X, raw_score=True, num_threads=1), dtype=np.float64)
    worst = float(np.max(np.abs(compiled.margin(X) - expected))) if len(X) else 0.0
    if not worst <= TOLERANCE:
        raise CompiledMismatchError(
            f"compiled predictor {compiled.path} disagrees with its booster (max raw-margin "
            f"difference {worst:.3g} > {TOLERANCE:g}): refusing the artifact; recompile it"
        )
    return worst
