"""Training configuration: frozen dataclasses, read once from an optional TOML file."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from data.schema import Problem, ValidationError


@dataclass(frozen=True)
class LightGBMParams:
    """The search's starting point (training.search). Shallow trees keep TreeSHAP explanations
    fast in serving. One thread: on a shared 2-core machine OpenMP threads that spin-wait for a
    busy core made a fold fit 20x slower; one thread is deterministic and never oversubscribes."""

    # Fewer, larger leaves and no class re-weighting cope better with labels still arriving.
    learning_rate: float = 0.1
    num_leaves: int = 15
    max_depth: int = 6
    min_child_samples: int = 200
    subsample: float = 0.8
    subsample_freq: int = 1
    colsample_bytree: float = 0.8
    reg_lambda: float = 1.0
    n_estimators: int = 800
    early_stopping_rounds: int = 100
    # Early stopping keeps the best round at or after this many trees (see training.fit).
    min_trees: int = 50
    # Fraud is ~0.5% of payments; up-weighting it (e.g. 10) overfits the noisy recent labels.
    scale_pos_weight: float = 1.0
    n_jobs: int = 1


@dataclass(frozen=True)
class BusinessInputs:
    """What the review team can handle and what mistakes cost (in the payments' currency)."""

    review_share: float = 0.01  # reviews per payment the team can absorb (1%)
    # "saving": review when the expected saving of a review (money at risk) is high enough;
    # "probability": when the fraud probability is. Saving puts the most money first.
    review_by: str = "saving"
    reviews_per_day: float | None = None  # overrides review_share when set
    review_cost: float = 3.0  # a reviewer's few minutes with an explained case
    hold_cost: float = 0.5  # holding a good payment: late receipt, a support contact
    chargeback_fee: float = 15.0  # added to the amount when fraud gets through
    false_decline_rate: float = 0.3  # share of a good payment's amount lost when declined
    capacities: tuple[float, ...] = (0.0025, 0.005, 0.01, 0.02, 0.05)  # trade-off table rows

    def __post_init__(self) -> None:
        if self.review_by not in ("saving", "probability"):
            raise ValueError(f"review_by must be 'saving' or 'probability', not {self.review_by!r}")


@dataclass(frozen=True)
class SearchSettings:
    """The bounded hyperparameter search on validation (training.search).

    Trials are drawn with the seed and tried in order, the defaults first, so a run is
    deterministic unless the time budget cuts it short (the printout says so).
    """

    trials: int = 8  # 1 = the defaults only
    budget_seconds: float = 60.0  # no new trial starts after this
    max_rows: int = 150_000  # the search fits on all frauds + a seeded sample of the genuine

    def __post_init__(self) -> None:
        if self.trials < 1:
            raise ValueError(f"trials must be >= 1, got {self.trials}")
        if not self.budget_seconds > 0:
            raise ValueError(f"budget_seconds must be > 0, got {self.budget_seconds}")
        if self.max_rows < 1_000:
            raise ValueError(f"max_rows must be >= 1000, got {self.max_rows}")


@dataclass(frozen=True)
class TrainConfig:
    label_delay_days: float = 7.0
    test_share: float = 0.2
    valid_share: float = 0.15
    seed: int = 42
    card_k: int = 100
    lightgbm: LightGBMParams = field(default_factory=LightGBMParams)
    business: BusinessInputs = field(default_factory=BusinessInputs)
    search: SearchSettings = field(default_factory=SearchSettings)
    # After choosing on validation, refit on fit + validation (the newest labelled payments).
    refit: bool = True


def _merge(obj: Any, table: dict[str, Any], where: str, src: str) -> Any:
    known = {f.name: f for f in fields(obj)}
    changes: dict[str, Any] = {}
    for key, value in table.items():
        if key not in known:
            raise ValidationError([Problem(src, None, None, f"[{where}] unknown key '{key}'")])
        current = getattr(obj, key)

        def wrong(expected: str, k: str = key, v: Any = value) -> ValidationError:
            text = f"[{where}] {k}: expected {expected}, got {v!r}"
            return ValidationError([Problem(src, None, None, text)])

        if hasattr(current, "__dataclass_fields__"):
            if not isinstance(value, dict):
                raise wrong("a table")
            changes[key] = _merge(current, value, key, src)
        elif isinstance(current, tuple):
            if not isinstance(value, list) or not all(_is_number(v) for v in value):
                raise wrong("a list of numbers")
            changes[key] = tuple(float(v) for v in value)
        elif isinstance(current, bool):
            if not isinstance(value, bool):
                raise wrong("true or false")
            changes[key] = value
        elif isinstance(current, int):
            if isinstance(value, bool) or not isinstance(value, int):
                raise wrong("a whole number")
            changes[key] = value
        elif isinstance(current, float) or current is None:
            if not _is_number(value):
                raise wrong("a number")
            changes[key] = float(value)
        else:
            changes[key] = value
    try:
        return replace(obj, **changes)
    except ValueError as exc:
        raise ValidationError([Problem(src, None, None, f"[{where}] {exc}")]) from None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def load_config(path: str | Path | None) -> TrainConfig:
    """Defaults, overridden by a TOML file's tables ([lightgbm], [business], top-level keys)."""
    config = TrainConfig()
    if path is None:
        return config
    try:
        doc = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValidationError([Problem(str(path), None, None, "config file not found")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ValidationError([Problem(str(path), None, None, f"not valid TOML: {exc}")]) from None
    return _merge(config, doc, "top level", str(path))
