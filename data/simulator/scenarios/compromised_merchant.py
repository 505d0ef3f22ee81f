"""Compromised merchant: shops leak card data for a window; the cards are used elsewhere later."""

from __future__ import annotations

import numpy as np

from data.simulator.arrays import _burst_sizes, _top_k
from data.simulator.config import SimulationConfig
from data.simulator.population import _World
from data.simulator.rows import _Rows
from data.simulator.scenarios.common import (
    _auth,
    _bursts,
    _event_times,
    _pick_card,
    _remote_fraud,
    _victims,
)
from data.simulator.tables import _DAY, _HOUR, _MINUTE, _ONLINE


def _compromised_merchant(
    rng: np.random.Generator, cfg: SimulationConfig, w: _World, target: int, legit: _Rows
) -> _Rows:
    """Merchants leak card data for a window; the cards are used elsewhere days later, mildly.

    Compromised shops are added (busy ones likelier, at random) until enough cards passed
    through them; the fraud is stolen-card-like but with smaller amounts and more proxies.
    """
    sizes = _burst_sizes(rng, target, lambda k: 1 + np.minimum(rng.poisson(0.8, k), 2))
    n_ev = len(sizes)
    n = int(sizes.sum())
    # POS malware and skimmers: busy shops (card present) are the targets worth the effort
    volume = np.bincount(legit.merch, minlength=len(w.m_city)).astype(np.float64)
    volume = np.where(w.m_kind != _ONLINE, volume, 0.0) ** 2
    order = _top_k(rng, volume, int((volume > 0).sum()))
    period = w.end - w.start
    cards: list[np.ndarray] = []
    visits: list[np.ndarray] = []
    found = 0
    for m in order[:60].tolist():  # a handful of merchants; a loop over merchants, not rows
        length = int(rng.integers(3 * _DAY, 11 * _DAY))
        latest = max(period - length - 21 * _DAY, 0)
        w0 = w.start + int(rng.integers(0, latest + 1))
        hit = np.flatnonzero((legit.merch == m) & (legit.ts >= w0) & (legit.ts < w0 + length))
        if len(hit) == 0:
            continue
        hit = hit[np.argsort(legit.ts[hit], kind="stable")]
        card, first = np.unique(legit.card[hit], return_index=True)
        keep = np.argsort(first, kind="stable")
        cards.append(card[keep])
        visits.append(legit.ts[hit][first[keep]])
        found += len(card)
        if found >= 1.5 * n_ev:
            break
    card_pool = np.concatenate(cards) if cards else np.zeros(0, dtype=np.int64)
    visit_pool = np.concatenate(visits) if visits else np.zeros(0, dtype=np.int64)
    _, uniq = np.unique(card_pool, return_index=True)
    uniq = np.sort(uniq)
    card_pool, visit_pool = card_pool[uniq], visit_pool[uniq]
    if len(card_pool) >= n_ev:
        pick = np.sort(rng.choice(len(card_pool), size=n_ev, replace=False))
        ev_card, visit = card_pool[pick], visit_pool[pick]
    else:  # too few cards went through: leaked elsewhere, any time
        extra = n_ev - len(card_pool)
        victims = _victims(rng, w, extra)
        ev_card = np.concatenate([card_pool, _pick_card(rng, w, victims)])
        visit = np.concatenate([visit_pool, _event_times(rng, cfg, w, victims, _DAY) - _DAY])
    ev_cust = w.card_owner[ev_card]
    longest = np.clip(w.end - _DAY - visit, _HOUR, 20 * _DAY)
    shortest = np.minimum(2 * _DAY, longest // 2)
    t0 = visit + shortest + (rng.random(n_ev) * (longest - shortest)).astype(np.int64)
    t0 = np.maximum(t0, w.c_created[ev_cust] + _HOUR)
    ts = _bursts(rng, w, t0, sizes, 40 * _MINUTE, 6 * _HOUR)
    cust = np.repeat(ev_cust, sizes)
    merch = w.fraud_online.draw(rng, np.zeros(n, dtype=np.int64))
    eur = w.m_ticket[merch] * rng.lognormal(np.log(1.7), 0.5, n)
    rows = _remote_fraud(
        rng, w, cust, ts, merch, eur, sizes,
        home_ip=0.5, no_device=0.15, ship_home=0.5, own_email=0.6,
        auth=_auth(rng, n, 0.50, 0.10), scenario="compromised_merchant",
    )  # fmt: skip
    rows.card = np.repeat(ev_card, sizes)
    return rows
