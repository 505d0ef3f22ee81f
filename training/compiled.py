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


class _Buffers:
    """One caller's C-call buffers, made once: the Entry row, the output, the missing mask,
    the row's int words (a view), and the pointer arguments as ctypes objects (passed as they
    are, where a Python int would be converted to a new one per call)."""

    __slots__ = ("args", "buf", "missing", "res", "words")

    def __init__(self, n_features: int) -> None:
        self.buf = np.empty(n_features, dtype=np.float64)
        # LightGBM binary: one output; room for a few in case of a multi-output build
        self.res = np.zeros(4, dtype=np.float64)
        self.missing = np.empty(n_features, dtype=np.bool_)
        self.words = self.buf.view(np.int32)[0::2]  # the Entry's int member (low word, LE)
        self.args = (
            ctypes.c_void_p(self.buf.ctypes.data),
            ctypes.c_int(1),
            ctypes.c_void_p(self.res.ctypes.data),
        )


_MISSING_WORD = np.array(-1, dtype=np.int32)


@dataclass
class CompiledPredictor:
    """Raw margins from the compiled library, one row per C call, no allocation per row but
    the result. The buffers are reused across calls (one set per concurrent caller, from a
    free list), so concurrent calls never share them."""

    path: Path
    n_features: int
    _lib: ctypes.PyDLL = field(repr=False)
    _free: list[_Buffers] = field(default_factory=list, repr=False)

    @classmethod
    def load(cls, path: Path) -> CompiledPredictor:
        # PyDLL: the call keeps the GIL. A few us of arithmetic gains nothing from releasing
        # it, and in the server the scoring thread would then wait to win it back from the
        # busy event loop (up to the 5 ms switch interval) after every payment's model call.
        lib = ctypes.PyDLL(str(path))
        lib.predict.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
        lib.predict.restype = None
        lib.get_num_feature.restype = ctypes.c_int32
        n = int(lib.get_num_feature())
        return cls(path, n, lib, [_Buffers(n)])

    def margin(self, X: np.ndarray) -> np.ndarray:
        """Raw margins (log-odds) of the rows of X (n x n_features, float64): a new array."""
        X = np.asarray(X, dtype=np.float64)
        out = np.empty(X.shape[0], dtype=np.float64)
        free = self._free
        b = free.pop() if free else _Buffers(self.n_features)
        try:
            buf, res, missing, words = b.buf, b.res, b.missing, b.words
            bp, one, rp = b.args
            predict = self._lib.predict
            isnan, copyto = np.isnan, np.copyto
            for i in range(X.shape[0]):
                row = X[i]
                copyto(buf, row)
                isnan(row, out=missing)
                # always (no missing.any() first: a reduction costs more than this copy)
                copyto(words, _MISSING_WORD, where=missing)
                res[0] = 0.0  # the generated code adds to its output
                predict(bp, one, rp)
                out[i] = res.item(0)
        finally:
            free.append(b)
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
