"""Account takeover: credentials changed minutes to hours before big online payments."""

from __future__ import annotations

import numpy as np

from data.simulator.arrays import _burst_sizes
from data.simulator.config import SimulationConfig
from data.simulator.population import _usual_device, _World
from data.simulator.rows import _Rows
from data.simulator.scenarios.common import _auth, _bursts, _event_times, _remote_fraud, _victims
from data.simulator.tables import _HOUR, _MINUTE


def _account_takeover(
    rng: np.random.Generator, cfg: SimulationConfig, w: _World, target: int
) -> tuple[_Rows, np.ndarray, np.ndarray]:
    """A taken-over account: credentials changed minutes to hours before big online payments.

    A quarter run on the victim's own device (remote-access malware), from their home address.
    Returns the rows and each event's (customer, credential change time).
    """
    sizes = _burst_sizes(rng, target, lambda k: 1 + np.minimum(rng.poisson(0.9, k), 3))
    n_ev = len(sizes)
    n = int(sizes.sum())
    victims = _victims(rng, w, n_ev)
    t0 = _event_times(rng, cfg, w, victims, 8 * _HOUR)
    lead = np.exp(rng.uniform(np.log(5 * _MINUTE), np.log(6 * _HOUR), n_ev))
    changed = t0 - lead.astype(np.int64)
    ts = _bursts(rng, w, t0, sizes, 20 * _MINUTE, 3 * _HOUR)
    changed = np.minimum(changed, ts[np.cumsum(sizes) - sizes] - _MINUTE) if n_ev else changed
    cust = np.repeat(victims, sizes)
    merch = w.fraud_online.draw(rng, np.zeros(n, dtype=np.int64))
    eur = w.m_ticket[merch] * rng.lognormal(np.log(3.2), 0.6, n)
    rows = _remote_fraud(
        rng, w, cust, ts, merch, eur, sizes,
        home_ip=0.5, no_device=0.05, ship_home=0.4, own_email=1.0,
        auth=_auth(rng, n, 0.25, 0.25), scenario="account_takeover",
    )  # fmt: skip
    rat = np.repeat(rng.random(n_ev) < 0.25, sizes)
    own = _usual_device(w, cust, np.zeros(n, dtype=np.int64), ts)
    rows.device = np.where(rat, own, rows.device)
    rows.ip = np.where(rat, w.c_home_ip[cust], rows.ip)
    rows.ip_country = np.where(rat, w.c_country[cust], rows.ip_country)
    return rows, victims, changed
