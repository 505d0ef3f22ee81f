"""The stress scenarios of `riskgate simulate --scenario`: where review capacity runs out.

The default sample never fills riskgate's queue, so the capacity-aware policy has nothing to
prove there. `surge5` makes the sample's first surge day a 5x promotion day (one day, five
times the volume of an ordinary one); `maintenance` pulls all but one day-shift reviewer to
planned maintenance for six hours of the held-out period's busiest day; `both` does the two
on the same day. The absence is planned, so the capacity the capacity-aware policy plans with
drops with it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd

from data.simulator import SimulationConfig

SCENARIOS = ("none", "surge5", "maintenance", "both")
SURGE5_MULTIPLIER = 5.0
MAINTENANCE_HOURS = (10.0, 16.0)  # UTC, inside the default day shift (08-20)


@dataclass(frozen=True)
class Scenario:
    name: str = "none"

    def __post_init__(self) -> None:
        if self.name not in SCENARIOS:
            raise ValueError(f"--scenario {self.name!r}: use one of {', '.join(SCENARIOS)}")

    @property
    def surge5(self) -> bool:
        return self.name in ("surge5", "both")

    @property
    def maintenance(self) -> bool:
        return self.name in ("maintenance", "both")

    def describe(self) -> str:
        lo, hi = MAINTENANCE_HOURS
        parts = []
        if self.surge5:
            parts.append(f"a {SURGE5_MULTIPLIER:g}x promotion day (the sample's first surge day)")
        if self.maintenance:
            parts.append(
                f"maintenance {lo:02.0f}:00-{hi:02.0f}:00 UTC on the held-out period's busiest "
                "day with one day-shift reviewer left"
            )
        return " and ".join(parts) or "none (the default sample)"


def simulation_config(base: SimulationConfig, scenario: Scenario) -> SimulationConfig:
    """The simulator's config for the scenario: surge5 makes one 5x surge day of the two."""
    if not scenario.surge5:
        return base
    return replace(base, surge_days=(base.surges[0],), surge_multiplier=SURGE5_MULTIPLIER)


def busiest_day(timestamps: pd.Series) -> pd.Timestamp:
    """The day (UTC midnight) with the most payments; the first of equals."""
    per_day = timestamps.dt.floor("D").value_counts()
    top = per_day.max()
    return pd.Timestamp(min(d for d, n in per_day.items() if n == top))
