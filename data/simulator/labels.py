"""Chargebacks: when each fraudulent payment is labelled (days to weeks later, per card)."""

from __future__ import annotations

import numpy as np

from data.simulator.config import SCENARIOS, SimulationConfig
from data.simulator.rows import _Rows
from data.simulator.tables import _DAY, _HOUR


def _label(rng: np.random.Generator, cfg: SimulationConfig, rows: _Rows) -> None:
    """Chargeback time: a dispute per card, days to weeks after its last fraudulent payment."""
    n = len(rows)
    if n == 0:
        return
    friendly = rows.scenario == SCENARIOS.index("friendly_fraud")
    # a card's fraudulent payments less than two days apart are disputed together
    order = np.lexsort((rows.ts, rows.card))
    card, ts = rows.card[order], rows.ts[order]
    new_event = np.r_[True, (card[1:] != card[:-1]) | (ts[1:] - ts[:-1] > 2 * _DAY)]
    event = np.cumsum(new_event) - 1
    last = np.maximum.reduceat(ts, np.flatnonzero(new_event))
    median = np.where(
        friendly[order], cfg.friendly_chargeback_median_days, cfg.chargeback_median_days
    )
    sigma = np.where(friendly[order], cfg.friendly_chargeback_sigma, cfg.chargeback_sigma)
    first_row = np.flatnonzero(new_event)
    days = rng.lognormal(np.log(median[first_row]), sigma[first_row])
    delay = np.maximum(days * _DAY, _HOUR).astype(np.int64)
    jitter = rng.integers(0, 2 * _DAY, n)
    label = np.empty(n, dtype=np.int64)
    label[order] = last[event] + delay[event] + jitter
    rows.label = np.maximum(label, rows.ts + _HOUR)
