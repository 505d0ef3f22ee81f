"""The calendar of genuine payments: a weekly rhythm, surge days (a promotion brings more payments
and sign-ups), and who pays when."""

from __future__ import annotations

import numpy as np

from data.simulator.arrays import _probs
from data.simulator.config import SimulationConfig
from data.simulator.population import _World
from data.simulator.tables import _DAY, _HOUR, _HOURS, _MINUTE, _WEEKDAYS


def _day_weights(cfg: SimulationConfig, surge_factor: float) -> np.ndarray:
    """Relative volume per day: a weekly rhythm, times `surge_factor` on surge days."""
    first = cfg.start_utc.day_of_week
    w = np.array([_WEEKDAYS[(first + d) % 7] for d in range(cfg.days)])
    w[list(cfg.surges)] *= surge_factor
    return w


def _schedule(
    rng: np.random.Generator, cfg: SimulationConfig, w: _World, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """When genuine payments happen and whose they are; opens the new customers' accounts.

    Returns (timestamp ms, customer, local hour, surge day?) per row.
    """
    n_cust = len(w.c_country)
    period = w.end - w.start
    counts = rng.multinomial(n, _probs(_day_weights(cfg, cfg.surge_multiplier)))
    day = np.repeat(np.arange(cfg.days), counts)
    surge_day = np.zeros(cfg.days, dtype=bool)
    surge_day[list(cfg.surges)] = True
    surge = surge_day[day]
    hour = rng.choice(24, size=n, p=_probs(_HOURS))
    local = day * _DAY + hour * _HOUR + rng.integers(0, _HOUR, n)
    cust = rng.choice(n_cust, size=n, p=_probs(w.c_activity))
    ts = w.start + (local - w.c_offset[cust]) % period

    # Established accounts are months to years old; new ones open just before their first
    # payment, more of them on surge days (the promotion brings sign-ups).
    months = np.clip(rng.lognormal(np.log(30.0), 1.0, n_cust), 1.0, 200.0)
    created = w.start - (months * 30.44 * _DAY).astype(np.int64)
    created -= rng.integers(0, _DAY, n_cust)
    n_new = min(round(n_cust * min(0.3, 0.08 * cfg.days / 90)), n // 4)
    new_ids = rng.choice(n_cust, size=n_new, replace=False)
    keys = rng.exponential(size=n) / np.where(surge, 2.0, 1.0)
    first = np.sort(np.argpartition(keys, n_new)[:n_new]) if n_new else np.zeros(0, np.int64)
    cust[first] = new_ids
    created[new_ids] = ts[first] - rng.integers(2 * _MINUTE, 3 * _HOUR, n_new)
    is_new = np.zeros(n_cust, dtype=bool)
    is_new[new_ids] = True
    early = np.flatnonzero(ts < created[cust])
    established = np.where(is_new, 0.0, w.c_activity)
    cust[early] = rng.choice(n_cust, size=len(early), p=_probs(established))
    w.c_created = created
    w.c_new = is_new
    return ts, cust, hour, surge
