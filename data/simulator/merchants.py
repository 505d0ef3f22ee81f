"""The merchants: a few guaranteed per city and online, the rest drawn by category share, each
with a place, a category, a typical ticket, a channel; and the pools payments draw them from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data.simulator.arrays import _Pool, _probs
from data.simulator.config import SimulationConfig
from data.simulator.tables import (
    _CATEGORIES,
    _CITIES,
    _COUNTRIES,
    _CP,
    _GUARANTEED_LOCAL,
    _GUARANTEED_ONLINE,
    _GUARANTEED_TOURIST,
    _HOME_COUNTRIES,
    _ONLINE,
    _cidx,
)


@dataclass
class Merchants:
    """Merchant tables (rows refer to merchants by position) and the pools to draw them from."""

    m_city: np.ndarray
    m_country: np.ndarray
    m_lat: np.ndarray
    m_lon: np.ndarray
    m_cat: np.ndarray
    m_kind: np.ndarray
    m_ticket: np.ndarray
    m_pop: np.ndarray
    cp_by_city: _Pool
    online_by_country: _Pool
    online_all: _Pool
    fraud_online: _Pool
    testing: _Pool


def build_merchants(
    rng: np.random.Generator, cfg: SimulationConfig, home_city_w: np.ndarray
) -> Merchants:
    """Draws from `rng` in the same order as before the simulator was a package (same bytes)."""
    n_cities = len(_CITIES)
    city_country = np.array([_cidx(c[0]) for c in _CITIES], dtype=np.int64)
    city_lat = np.array([c[1] for c in _CITIES])
    city_lon = np.array([c[2] for c in _CITIES])
    home_w = dict(_HOME_COUNTRIES)
    # merchants: a few guaranteed per city and online, the rest drawn by category share
    cat_mcc = [c[0] for c in _CATEGORIES]
    g_city: list[int] = []
    g_cat: list[int] = []
    g_kind: list[int] = []
    for i, city in enumerate(_CITIES):
        wanted = _GUARANTEED_LOCAL + (() if city[0] in home_w else _GUARANTEED_TOURIST)
        for mcc in wanted:
            g_city.append(i)
            g_cat.append(cat_mcc.index(mcc))
            g_kind.append(_CP)
    n_guaranteed_online = len(_GUARANTEED_ONLINE)
    hq = rng.choice(n_cities, size=n_guaranteed_online, p=_probs(home_city_w))
    for mcc, city_i in zip(_GUARANTEED_ONLINE, hq.tolist(), strict=True):
        g_city.append(city_i)
        g_cat.append(cat_mcc.index(mcc))
        g_kind.append(_ONLINE)
    n_merch = max(cfg.rows // 400, len(g_city) + 40)
    n_rand = n_merch - len(g_city)
    r_cat = rng.choice(len(_CATEGORIES), size=n_rand, p=_probs([c[1] for c in _CATEGORIES]))
    kind_cum = np.cumsum([[c[4], c[5], c[6]] for c in _CATEGORIES], axis=1)
    u = rng.random(n_rand)
    r_kind = (u >= kind_cum[r_cat, 0]).astype(np.int64) + (u >= kind_cum[r_cat, 1])
    r_kind = np.minimum(r_kind, 2)
    tourist = np.array([0.0 if c[0] in home_w else 1.0 for c in _CITIES])
    phys_w = 0.92 * _probs(home_city_w) + 0.08 * _probs(tourist)
    phys_city = rng.choice(n_cities, size=n_rand, p=phys_w)
    hq_city = rng.choice(n_cities, size=n_rand, p=_probs(home_city_w))
    r_city = np.where(r_kind == _ONLINE, hq_city, phys_city)
    m_city = np.concatenate([np.array(g_city, dtype=np.int64), r_city])
    m_cat = np.concatenate([np.array(g_cat, dtype=np.int64), r_cat])
    m_kind = np.concatenate([np.array(g_kind, dtype=np.int64), r_kind])
    m_country = city_country[m_city]
    m_lat = np.round(city_lat[m_city] + rng.normal(0, 0.04, n_merch), 5)
    m_lon = np.round(city_lon[m_city] + rng.normal(0, 0.06, n_merch), 5)
    cat_ticket = np.array([c[3] for c in _CATEGORIES])
    cat_visits = np.array([c[2] for c in _CATEGORIES])
    cat_appeal = np.array([c[8] for c in _CATEGORIES])
    cat_testing = np.array([c[9] for c in _CATEGORIES])
    m_ticket = cat_ticket[m_cat] * rng.lognormal(0.0, 0.35, n_merch)
    m_pop = cat_visits[m_cat] * rng.lognormal(0.0, 1.0, n_merch)
    physical = m_kind != _ONLINE
    online = m_kind != _CP
    zeros = np.zeros(n_merch, dtype=np.int64)
    cp_by_city = _Pool(m_city, np.where(physical, m_pop, 0.0), n_cities)
    online_by_country = _Pool(m_country, np.where(online, m_pop, 0.0), len(_COUNTRIES))
    online_all = _Pool(zeros, np.where(online, m_pop, 0.0), 1)
    # fraudsters want goods and tickets that resell: appeal, reach and price all count
    lure = cat_appeal[m_cat] * np.sqrt(m_pop) * np.sqrt(m_ticket / 40.0)
    fraud_online = _Pool(zeros, np.where(online, lure, 0.0), 1)
    testing = _Pool(zeros, np.where(online & cat_testing[m_cat], np.sqrt(m_pop) + 0.1, 0.0), 1)
    return Merchants(
        m_city=m_city,
        m_country=m_country,
        m_lat=m_lat,
        m_lon=m_lon,
        m_cat=m_cat,
        m_kind=m_kind,
        m_ticket=m_ticket,
        m_pop=m_pop,
        cp_by_city=cp_by_city,
        online_by_country=online_by_country,
        online_all=online_all,
        fraud_online=fraud_online,
        testing=testing,
    )
