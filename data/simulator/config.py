"""Scenario names and `SimulationConfig`: everything that shapes a data set, checked on creation."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

# Optional contract columns the simulated world has no model for (they come from teams' files).
NOT_SIMULATED: tuple[str, ...] = ("customer_age", "city_population")

SCENARIOS: tuple[str, ...] = (
    "legit",
    "stolen_card",
    "account_takeover",
    "card_testing",
    "compromised_merchant",
    "friendly_fraud",
)


FRAUD_SCENARIOS: tuple[str, ...] = SCENARIOS[1:]


DEFAULT_SCENARIO_MIX: tuple[tuple[str, float], ...] = (
    ("stolen_card", 0.35),
    ("account_takeover", 0.15),
    ("card_testing", 0.20),
    ("compromised_merchant", 0.15),
    ("friendly_fraud", 0.15),
)


@dataclass(frozen=True)
class SimulationConfig:
    """Everything that shapes a simulated data set; equal configs give identical output.

    `scenario_mix` gives each fraud scenario's share of the fraud rows; scenarios left out get
    none. Chargeback delays are lognormal: `*_median_days` is the median, `*_sigma` the spread
    on the log scale; friendly fraud is disputed by the customer later than stolen-card fraud.
    """

    rows: int = 200_000
    days: int = 90
    fraud_rate: float = 0.005
    seed: int = 7
    start: str = "2024-01-01"
    surge_days: tuple[int, ...] | None = None
    surge_multiplier: float = 3.0
    scenario_mix: tuple[tuple[str, float], ...] = DEFAULT_SCENARIO_MIX
    chargeback_median_days: float = 10.0
    chargeback_sigma: float = 0.6
    friendly_chargeback_median_days: float = 35.0
    friendly_chargeback_sigma: float = 0.35

    def __post_init__(self) -> None:
        _check_config(self)

    @property
    def surges(self) -> tuple[int, ...]:
        """Surge day offsets; by default two days about 75% into the period (a late, test split).

        Like a Black Friday followed by a Cyber Monday three days later.
        """
        if self.surge_days is not None:
            return tuple(sorted(self.surge_days))
        first = int(self.days * 0.75)
        return (first, min(first + 3, self.days - 1))

    @property
    def shares(self) -> dict[str, float]:
        """Share of fraud rows per scenario, every scenario listed, in canonical order."""
        given = dict(self.scenario_mix)
        return {name: float(given.get(name, 0.0)) for name in FRAUD_SCENARIOS}

    @property
    def start_utc(self) -> pd.Timestamp:
        """`start` as a UTC timestamp (a naive date is taken as UTC)."""
        ts = pd.Timestamp(self.start)
        return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def _check_config(cfg: SimulationConfig) -> None:
    """Refuse a configuration that cannot give a meaningful data set, saying which value and why."""
    if not _is_int(cfg.rows) or cfg.rows < 1000:
        raise ValueError(f"rows must be an integer >= 1000, got {cfg.rows!r}")
    if not _is_int(cfg.days) or cfg.days < 7:
        raise ValueError(f"days must be an integer >= 7, got {cfg.days!r}")
    if not _is_number(cfg.fraud_rate) or not 0 < cfg.fraud_rate < 0.5:
        raise ValueError(
            f"fraud_rate must be a number with 0 < fraud_rate < 0.5, got {cfg.fraud_rate!r}"
        )
    if not _is_int(cfg.seed) or cfg.seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {cfg.seed!r}")
    if not isinstance(cfg.start, str):
        raise ValueError(f"start must be a date string such as '2024-01-01', got {cfg.start!r}")
    try:
        start = cfg.start_utc
    except (ValueError, TypeError) as exc:
        raise ValueError(f"start {cfg.start!r} is not a date (use e.g. '2024-01-01')") from exc
    if start is pd.NaT or start.year < 1971 or start.year > 2200:
        raise ValueError(f"start {cfg.start!r} must be a date between 1971 and 2200")
    if cfg.surge_days is not None:
        if not isinstance(cfg.surge_days, tuple) or not all(_is_int(d) for d in cfg.surge_days):
            raise ValueError(f"surge_days must be a tuple of day offsets, got {cfg.surge_days!r}")
        if any(not 0 <= d < cfg.days for d in cfg.surge_days):
            raise ValueError(f"surge_days must lie in 0..{cfg.days - 1}, got {cfg.surge_days!r}")
        if len(set(cfg.surge_days)) != len(cfg.surge_days):
            raise ValueError(f"surge_days must not repeat a day, got {cfg.surge_days!r}")
        if len(cfg.surge_days) > cfg.days // 2:
            raise ValueError(
                f"at most days // 2 = {cfg.days // 2} surge days, got {cfg.surge_days!r}"
            )
    if not _is_number(cfg.surge_multiplier) or not 1.0 <= cfg.surge_multiplier <= 20.0:
        raise ValueError(f"surge_multiplier must be between 1 and 20, got {cfg.surge_multiplier!r}")
    _check_mix(cfg.scenario_mix)
    for name in ("chargeback_median_days", "friendly_chargeback_median_days"):
        value = getattr(cfg, name)
        if not _is_number(value) or not 0 < value <= 365:
            raise ValueError(f"{name} must be a number of days in (0, 365], got {value!r}")
    for name in ("chargeback_sigma", "friendly_chargeback_sigma"):
        value = getattr(cfg, name)
        if not _is_number(value) or not 0 <= value <= 3:
            raise ValueError(f"{name} must be a number in [0, 3], got {value!r}")


def _check_mix(mix: object) -> None:
    if not isinstance(mix, tuple) or not all(
        isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) for p in mix
    ):
        raise ValueError(
            f"scenario_mix must be a tuple of (scenario, share) pairs, got {mix!r}; "
            "from a dict use tuple(d.items())"
        )
    names = [name for name, _ in mix]
    unknown = sorted(set(names) - set(FRAUD_SCENARIOS))
    if unknown:
        raise ValueError(f"unknown scenario(s) {unknown} in scenario_mix (use {FRAUD_SCENARIOS})")
    if len(set(names)) != len(names):
        raise ValueError(f"scenario_mix names a scenario twice: {names}")
    shares = [share for _, share in mix]
    if not all(_is_number(s) and math.isfinite(s) and s >= 0 for s in shares):
        raise ValueError(f"scenario_mix shares must be finite numbers >= 0, got {shares}")
    if abs(sum(shares) - 1.0) > 1e-6:
        raise ValueError(f"scenario_mix shares must sum to 1, they sum to {sum(shares):.6g}")
