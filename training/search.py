"""Choose LightGBM's hyperparameters and number of trees on held-out time, within a budget.

Fixed defaults tuned on one simulator do not travel: a small, seeded search over a grid that a
practitioner would try first (leaves, leaf size, column and row sampling, L2, learning rate)
picks what the team's own data wants. Each trial is scored on a validation period, or, when the
training period is too short to carve one, on time-ordered folds inside it. No I/O.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import lightgbm as lgb
import numpy as np

from training.config import LightGBMParams, SearchSettings
from training.fit import fit_booster, fit_rounds
from training.split import FOLDS, time_folds

GRID: dict[str, tuple[float, ...]] = {
    "num_leaves": (7, 15, 31, 63),
    "min_child_samples": (10, 25, 50, 100, 200),
    "colsample_bytree": (0.5, 0.7, 0.9),
    "subsample": (0.7, 0.85, 1.0),
    "reg_lambda": (0.0, 1.0, 5.0, 20.0),
    "learning_rate": (0.05, 0.1, 0.15),
    "scale_pos_weight": (1.0, 2.0, 4.0),
}
_INTS = ("num_leaves", "min_child_samples")

Say = Callable[[str], None]
Rounds = Callable[[int, float], None]


def candidates(base: LightGBMParams, n: int, seed: int) -> list[LightGBMParams]:
    """The defaults first, then n - 1 distinct seeded draws from GRID (same seed, same list)."""
    rng = np.random.default_rng(seed)
    out = [base]
    seen = {_key(base)}
    space = math.prod(len(v) for v in GRID.values())
    while len(out) < min(n, space + 1):
        changes: dict[str, float | int] = {}
        for name, values in GRID.items():
            v = values[int(rng.integers(len(values)))]
            changes[name] = int(v) if name in _INTS else float(v)
        leaves = int(changes["num_leaves"])
        depth = max(base.max_depth, math.ceil(math.log2(leaves)) + 1)
        cand = replace(base, max_depth=depth, **changes)  # type: ignore[arg-type]
        if _key(cand) not in seen:
            seen.add(_key(cand))
            out.append(cand)
    return out


def _key(p: LightGBMParams) -> tuple[float, ...]:
    return tuple(float(getattr(p, k)) for k in GRID)


@dataclass(frozen=True)
class Trial:
    params: LightGBMParams
    score: float  # validation (or mean out-of-fold) average precision at `rounds`
    rounds: int
    seconds: float


@dataclass
class Selection:
    """What the search chose, the final booster, and its raw scores on held-out rows."""

    params: LightGBMParams
    rounds: int
    booster: lgb.Booster
    holdout_raw: np.ndarray  # raw scores on the validation rows / out-of-fold rows
    holdout_rows: np.ndarray  # positions of those rows in the caller's fit (folds) or valid set
    trials: list[Trial] = field(default_factory=list)
    cut_by_budget: bool = False
    method: str = "validation"


def sample_rows(y: np.ndarray, max_rows: int, seed: int) -> np.ndarray:
    """All frauds plus a seeded sample of the genuine, at most `max_rows` (sorted positions)."""
    if len(y) <= max_rows:
        return np.arange(len(y))
    pos = np.flatnonzero(y == 1)
    neg = np.flatnonzero(y != 1)
    take = max(max_rows - len(pos), min(len(neg), 1_000))
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate((pos, rng.choice(neg, size=take, replace=False))))


def _budget(settings: SearchSettings) -> Callable[[int], bool]:
    began = time.perf_counter()

    def may_start(i: int) -> bool:
        return i == 0 or time.perf_counter() - began < settings.budget_seconds

    return may_start


def on_validation(
    X_fit: np.ndarray,
    y_fit: np.ndarray,
    X_valid: np.ndarray,
    y_valid: np.ndarray,
    names: list[str],
    base: LightGBMParams,
    seed: int,
    settings: SearchSettings,
    *,
    say: Say | None = None,
    rounds: Rounds | None = None,
) -> Selection:
    """Trials fitted on (a sample of) the fitting part, scored on validation; the winner is
    refitted on the whole fitting part when the search used a sample."""
    tell = say or (lambda _m: None)
    grid = candidates(base, settings.trials, seed)
    rows = sample_rows(y_fit, settings.max_rows, seed)
    sampled = len(rows) < len(y_fit)
    if sampled and len(grid) > 1:
        tell(f"search on {len(rows):,} of {len(y_fit):,} fitting rows (all frauds kept)")
    may_start = _budget(settings)
    trials: list[Trial] = []
    best: tuple[float, lgb.Booster | None] = (-math.inf, None)
    cut = False
    for i, params in enumerate(grid):
        if not may_start(i):
            cut = True
            break
        began = time.perf_counter()
        curve: list[float] = []
        Xs, ys = (X_fit[rows], y_fit[rows]) if len(grid) > 1 else (X_fit, y_fit)
        booster = fit_booster(Xs, ys, X_valid, y_valid, names, params, seed, rounds, curve)
        kept = booster.best_iteration or booster.current_iteration()
        score = curve[kept - 1] if curve else float("nan")
        trials.append(Trial(params, score, kept, time.perf_counter() - began))
        if len(grid) > 1:
            tell(_trial_line(i, len(grid), trials[-1]))
        if score > best[0]:
            best = (score, booster)
    if cut:
        tell(_cut_line(settings, len(trials), len(grid)))
    winner = max(trials, key=lambda t: t.score)
    found = best[1]
    assert found is not None
    booster = found
    if len(grid) > 1 and sampled:
        booster = fit_booster(X_fit, y_fit, X_valid, y_valid, names, winner.params, seed, rounds)
    kept = booster.best_iteration or booster.current_iteration()
    raw = np.asarray(booster.predict(X_valid, num_threads=base.n_jobs))
    return Selection(
        winner.params, kept, booster, raw, np.arange(len(y_valid)), trials, cut, "validation"
    )


def by_folds(
    X_fit: np.ndarray,
    y_fit: np.ndarray,
    ts_fit: np.ndarray,
    names: list[str],
    base: LightGBMParams,
    seed: int,
    settings: SearchSettings,
    *,
    say: Say | None = None,
    rounds: Rounds | None = None,
    k: int = FOLDS,
) -> Selection:
    """No validation period: each trial is scored on k expanding time-ordered folds; the number
    of trees is the best round of the mean fold curve; the winner is refitted on all rows and
    calibrated on its out-of-fold scores."""
    tell = say or (lambda _m: None)
    folds = time_folds(ts_fit, k)
    usable = [(f, v) for f, v in folds if y_fit[f].sum() > 0 and y_fit[v].sum() > 0]
    if len(usable) < 2:
        total = int(y_fit.sum())
        raise ValueError(
            f"the training period holds {total} known fraud(s) in {len(y_fit):,} payments: "
            f"choosing the number of trees by {k} time-ordered folds needs known frauds in at "
            "least two folds' fitting and validation parts (in practice >= "
            f"{2 * (k + 1)} frauds spread over the period); give a longer training period or "
            "an explicit --valid-start/--valid-end"
        )
    grid = candidates(base, settings.trials, seed)
    may_start = _budget(settings)
    trials: list[Trial] = []
    best_boosters: list[lgb.Booster] = []
    cut = False
    for i, params in enumerate(grid):
        if not may_start(i):
            cut = True
            break
        began = time.perf_counter()
        curves: list[list[float]] = []
        boosters: list[lgb.Booster] = []
        for f, v in usable:
            rows = f[sample_rows(y_fit[f], settings.max_rows, seed)]
            curve: list[float] = []
            b = fit_booster(
                X_fit[rows], y_fit[rows], X_fit[v], y_fit[v], names, params, seed, rounds, curve
            )
            curves.append(curve)
            boosters.append(b)
        n, score = _best_mean_round(curves, params.min_trees)
        trials.append(Trial(params, score, n, time.perf_counter() - began))
        if len(grid) > 1:
            tell(_trial_line(i, len(grid), trials[-1]))
        if score >= max(t.score for t in trials):
            best_boosters = boosters
    if cut:
        tell(_cut_line(settings, len(trials), len(grid)))
    winner = max(trials, key=lambda t: t.score)
    oof_rows = np.concatenate([v for _, v in usable])
    oof_raw = np.concatenate(
        [
            np.asarray(
                b.predict(
                    X_fit[v],
                    num_iteration=min(winner.rounds, b.num_trees()),
                    num_threads=base.n_jobs,
                )
            )
            for b, (_, v) in zip(best_boosters, usable, strict=True)
        ]
    )
    booster = fit_rounds(X_fit, y_fit, names, winner.params, seed, winner.rounds)
    return Selection(winner.params, winner.rounds, booster, oof_raw, oof_rows, trials, cut, "folds")


def _best_mean_round(curves: list[list[float]], floor: int) -> tuple[int, float]:
    """Best round (1-based, >= floor where the curves reach it) of the mean fold curve; a fold
    that stopped early holds its last value."""
    longest = max(len(c) for c in curves)
    padded = np.array([c + [c[-1]] * (longest - len(c)) for c in curves])
    mean = padded.mean(axis=0)
    lo = min(max(floor, 1), longest) - 1
    i = lo + int(np.argmax(mean[lo:]))
    return i + 1, float(mean[i])


def _cut_line(settings: SearchSettings, done: int, planned: int) -> str:
    return (
        f"search: time budget of {settings.budget_seconds:.0f} s reached after {done} of "
        f"{planned} trials (the result then depends on the machine's speed)"
    )


def _trial_line(i: int, n: int, t: Trial) -> str:
    p = t.params
    return (
        f"search {i + 1}/{n}: AP {t.score:.4f} at {t.rounds} trees ({t.seconds:.1f} s) "
        f"leaves={p.num_leaves} min_leaf={p.min_child_samples} cols={p.colsample_bytree:g} "
        f"rows={p.subsample:g} l2={p.reg_lambda:g} lr={p.learning_rate:g}"
    )
