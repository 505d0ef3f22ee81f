"""Card testing: tiny payments seconds apart at small online merchants, then one large cash-out."""

from __future__ import annotations

import numpy as np

from data.simulator.arrays import _burst_sizes
from data.simulator.config import SimulationConfig
from data.simulator.population import _World
from data.simulator.rows import _Rows
from data.simulator.scenarios.common import (
    _auth,
    _burst_times,
    _event_times,
    _remote_fraud,
    _victims,
)
from data.simulator.tables import _DAY, _HOUR, _MINUTE, _rates


def _card_testing(rng: np.random.Generator, cfg: SimulationConfig, w: _World, target: int) -> _Rows:
    """5-20 tiny payments within minutes at small online merchants, then one large cash-out."""
    sizes = _burst_sizes(rng, target, lambda k: rng.integers(6, 22, k), min_last=3)
    n_ev = len(sizes)
    n = int(sizes.sum())
    victims = _victims(rng, w, n_ev)
    t0 = _event_times(rng, cfg, w, victims, _DAY)
    starts = np.cumsum(sizes) - sizes
    pos = np.arange(n) - np.repeat(starts, sizes)
    large = pos == np.repeat(sizes - 1, sizes)
    gaps = np.where(
        large,
        np.minimum(rng.exponential(30 * _MINUTE, n), 6 * _HOUR) + _MINUTE,  # then cash out
        np.minimum(rng.exponential(40_000, n), 10 * _MINUTE),  # tests seconds apart
    )
    ts = _burst_times(w, t0, sizes, gaps)
    cust = np.repeat(victims, sizes)
    zeros = np.zeros(n_ev, dtype=np.int64)
    tester_a = w.testing.draw(rng, zeros)
    tester_b = np.where(rng.random(n_ev) < 0.5, w.testing.draw(rng, zeros), tester_a)
    test_merch = np.where(
        rng.random(n) < 0.5, np.repeat(tester_a, sizes), np.repeat(tester_b, sizes)
    )
    cash_out = w.fraud_online.draw(rng, np.zeros(n, dtype=np.int64))
    merch = np.where(large, cash_out, test_merch)
    rate = _rates()[w.c_country[cust]]
    tiny = np.round(rng.uniform(0.5, 2.0, n), 2) / rate  # 0.50-2.00 in the card's currency
    eur = np.where(large, w.m_ticket[merch] * rng.lognormal(np.log(3.5), 0.5, n), tiny)
    auth = np.where(large, _auth(rng, n, 0.30, 0.20), _auth(rng, n, 0.10, 0.05))
    return _remote_fraud(
        rng, w, cust, ts, merch, eur, sizes,
        home_ip=0.3, no_device=0.1, ship_home=0.4, own_email=0.4,
        auth=auth, scenario="card_testing",
    )  # fmt: skip
