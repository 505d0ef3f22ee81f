"""Stolen card: details used remotely in a few bigger online payments; some cards are tapped in
shops near the victim's home."""

from __future__ import annotations

import numpy as np

from data.simulator.arrays import _burst_sizes
from data.simulator.config import SimulationConfig
from data.simulator.population import _World
from data.simulator.rows import _Rows
from data.simulator.scenarios.common import _auth, _bursts, _event_times, _remote_fraud, _victims
from data.simulator.tables import _DAY, _HOUR, _MINUTE


def _stolen_card(rng: np.random.Generator, cfg: SimulationConfig, w: _World, target: int) -> _Rows:
    """Card details used remotely: a few bigger online payments within hours; some in person.

    A physically stolen card is tapped in shops near the victim's home (small amounts, no
    device or IP at all); details bought online are used from the fraudster's device.
    """
    sizes = _burst_sizes(rng, target, lambda k: 1 + np.minimum(rng.poisson(1.3, k), 5))
    n = int(sizes.sum())
    victims = _victims(rng, w, len(sizes))
    t0 = _event_times(rng, cfg, w, victims, _DAY)
    ts = _bursts(rng, w, t0, sizes, 25 * _MINUTE, 6 * _HOUR)
    cust = np.repeat(victims, sizes)
    merch = w.fraud_online.draw(rng, np.zeros(n, dtype=np.int64))
    eur = w.m_ticket[merch] * rng.lognormal(np.log(2.6), 0.7, n)
    rows = _remote_fraud(
        rng, w, cust, ts, merch, eur, sizes,
        home_ip=0.45, no_device=0.12, ship_home=0.55, own_email=0.5,
        auth=_auth(rng, n, 0.40, 0.15), scenario="stolen_card",
    )  # fmt: skip
    physical = np.repeat(rng.random(len(sizes)) < 0.12, sizes)
    shop = w.cp_by_city.draw(rng, w.c_city[cust])
    rows.merch = np.where(physical, shop, rows.merch)
    tap = np.minimum(w.m_ticket[shop] * rng.lognormal(0.0, 0.5, n), 50.0)
    rows.eur = np.where(physical, tap, rows.eur)
    rows.online = ~physical
    for name in ("device", "ip", "ip_country", "ship", "auth"):
        setattr(rows, name, np.where(physical, -1, getattr(rows, name)))
    rows.email = np.where(physical, w.c_email[cust], rows.email)
    return rows
