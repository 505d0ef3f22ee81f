"""Friendly fraud: customers on their own device at home disputing their own purchase later."""

from __future__ import annotations

import numpy as np

from data.simulator.arrays import _burst_sizes
from data.simulator.config import SimulationConfig
from data.simulator.population import _usual_device, _World
from data.simulator.rows import _Rows
from data.simulator.scenarios.common import _auth, _bursts, _event_times, _pick_card, _victims
from data.simulator.tables import _DAY, _HOUR


def _friendly_fraud(
    rng: np.random.Generator, cfg: SimulationConfig, w: _World, target: int
) -> _Rows:
    """The customers themselves, on their own device at home, disputing a somewhat larger buy."""
    sizes = _burst_sizes(rng, target, lambda k: 1 + (rng.random(k) < 0.1).astype(np.int64))
    n_ev = len(sizes)
    n = int(sizes.sum())
    victims = _victims(rng, w, n_ev)
    t0 = _event_times(rng, cfg, w, victims, _DAY)
    ts = _bursts(rng, w, t0, sizes, 8 * _HOUR, 2 * _DAY)
    cust = np.repeat(victims, sizes)
    home = w.c_country[cust]
    online = np.repeat(rng.random(n_ev) < 0.85, sizes)
    web = w.online_by_country.has(home)
    merch = np.where(
        web,
        w.online_by_country.draw(rng, np.where(web, home, 0)),
        w.online_all.draw(rng, np.zeros(n, dtype=np.int64)),
    )
    merch = np.where(online, merch, w.cp_by_city.draw(rng, w.c_city[cust]))
    eur = w.m_ticket[merch] * w.c_scale[cust] * rng.lognormal(np.log(1.7), 0.45, n)
    own = _usual_device(w, cust, np.zeros(n, dtype=np.int64), ts)
    wallet = rng.random(n) < 0.3
    ships = online & w.cat_ships[w.m_cat[merch]]
    auth = _auth(rng, n, 0.75, 0.02)
    return _Rows.unlabelled(
        "friendly_fraud",
        cust=cust,
        card=np.repeat(_pick_card(rng, w, victims), sizes),
        merch=merch,
        ts=ts,
        eur=eur,
        online=online,
        device=np.where(online | wallet, own, -1),
        ip=np.where(online, w.c_home_ip[cust], -1),
        ip_country=np.where(online, home, -1),
        ship=np.where(ships, home, -1),
        auth=np.where(online, auth, -1),
        email=w.c_email[cust],
    )
