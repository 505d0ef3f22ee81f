"""The world the payments happen in: customers (home, cards, devices, e-mail, habits) with their
merchants, and the timelines of trips, new phones and credential changes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data.simulator.arrays import _probs
from data.simulator.config import SimulationConfig
from data.simulator.merchants import Merchants, build_merchants
from data.simulator.tables import (
    _CATEGORIES,
    _CITIES,
    _COUNTRIES,
    _DAY,
    _GENERIC_DOMAINS,
    _HOME_COUNTRIES,
    _HOUR,
    _LOCAL_DOMAINS,
    _MINUTE,
    _NAT,
    _NEVER,
    _SYLLABLES,
    _TLDS,
    _TRAVEL_DESTINATIONS,
    _cidx,
)


@dataclass
class _World(Merchants):
    """Entity tables (the merchants' from `Merchants`); rows refer to entities by position.
    Times are int64 UTC milliseconds."""

    start: int
    end: int
    city_country: np.ndarray
    city_lat: np.ndarray
    city_lon: np.ndarray
    # customers
    c_country: np.ndarray
    c_city: np.ndarray
    c_lat: np.ndarray
    c_lon: np.ndarray
    c_offset: np.ndarray
    c_activity: np.ndarray
    c_online: np.ndarray
    c_scale: np.ndarray
    c_card0: np.ndarray
    c_cards: np.ndarray
    c_devices: np.ndarray
    c_device: np.ndarray
    c_home_ip: np.ndarray
    c_email: np.ndarray
    c_fav: np.ndarray
    c_created: np.ndarray
    c_new: np.ndarray
    card_owner: np.ndarray
    cat_ships: np.ndarray
    # e-mail domains: generic first, then local, then the rare tail
    domains: list[str]
    n_generic: int
    rare0: int
    # timelines, filled once payment times are known
    c_trip_start: np.ndarray
    c_trip_end: np.ndarray
    c_trip_city: np.ndarray
    c_new_phone: np.ndarray
    c_cred_before: np.ndarray
    changes_cust: np.ndarray
    changes_at: np.ndarray


def _rare_domains(rng: np.random.Generator, n: int) -> list[str]:
    """A long tail of small domains (firms, family domains): unique, deterministic names."""
    space = len(_SYLLABLES) ** 3 * len(_TLDS)
    picks = rng.choice(space, size=min(n, space), replace=False)
    s = len(_SYLLABLES)
    return [
        f"{_SYLLABLES[p % s]}{_SYLLABLES[p // s % s]}{_SYLLABLES[p // s**2 % s]}.{_TLDS[p // s**3]}"
        for p in picks.tolist()
    ]


def _build_world(rng: np.random.Generator, cfg: SimulationConfig) -> _World:
    """Customers (home, cards, devices, habits) and merchants (place, category, ticket, channel)."""
    start = int(cfg.start_utc.value // 1_000_000)
    end = start + cfg.days * _DAY
    n_cities = len(_CITIES)
    city_country = np.array([_cidx(c[0]) for c in _CITIES], dtype=np.int64)
    city_lat = np.array([c[1] for c in _CITIES])
    city_lon = np.array([c[2] for c in _CITIES])
    city_offset = np.array([c[3] for c in _CITIES], dtype=np.int64) * _HOUR
    home_w = dict(_HOME_COUNTRIES)
    home_city_w = np.array([home_w.get(c[0], 0.0) * c[4] for c in _CITIES])

    # customers
    n_cust = max(cfg.rows // 40, 200)
    c_city = rng.choice(n_cities, size=n_cust, p=_probs(home_city_w))
    c_country = city_country[c_city]
    c_lat = np.round(city_lat[c_city] + rng.normal(0, 0.06, n_cust), 5)
    c_lon = np.round(city_lon[c_city] + rng.normal(0, 0.09, n_cust), 5)
    c_activity = rng.lognormal(0.0, 0.8, n_cust)
    c_online = rng.beta(2.0, 3.2, n_cust)
    c_scale = rng.lognormal(0.0, 0.45, n_cust)
    c_cards = 1 + (rng.random(n_cust) < 0.3).astype(np.int64)
    c_card0 = np.cumsum(c_cards) - c_cards
    card_owner = np.repeat(np.arange(n_cust), c_cards)
    c_devices = rng.choice(np.array([1, 2, 3]), size=n_cust, p=[0.45, 0.40, 0.15])
    c_device = np.arange(n_cust)[:, None] * 4 + np.arange(3)  # raw ids of usual devices
    c_home_ip = np.arange(n_cust) * 2
    # households: neighbours in a city-sorted list pair up; some share a tablet and a router
    by_city = np.lexsort((rng.random(n_cust), c_city))
    a, b = by_city[0:-1:2], by_city[1::2]
    pair = (c_city[a] == c_city[b]) & (rng.random(len(a)) < 0.2)
    a, b = a[pair], b[pair]
    c_devices[a] = np.maximum(c_devices[a], 2)
    c_devices[b] = np.maximum(c_devices[b], 2)
    c_device[b, 1] = c_device[a, 1]
    c_home_ip[b] = c_home_ip[a]

    # e-mail: common webmail, the home country's providers, or a rare domain
    generic = [d for d, _ in _GENERIC_DOMAINS]
    local_flat = [d for _, ds in _LOCAL_DOMAINS for d in ds]
    local_start = np.zeros(len(_COUNTRIES), dtype=np.int64)
    local_count = np.zeros(len(_COUNTRIES), dtype=np.int64)
    pos = len(generic)
    for code, ds in _LOCAL_DOMAINS:
        local_start[_cidx(code)] = pos
        local_count[_cidx(code)] = len(ds)
        pos += len(ds)
    rare = _rare_domains(rng, max(300, n_cust // 15))
    rare0 = len(generic) + len(local_flat)
    u = rng.random(n_cust)
    g_pick = rng.choice(len(generic), size=n_cust, p=_probs([w for _, w in _GENERIC_DOMAINS]))
    l_pick = local_start[c_country] + (rng.random(n_cust) * local_count[c_country]).astype(np.int64)
    zipf = 1.0 / np.arange(1, len(rare) + 1) ** 1.1
    r_pick = rare0 + rng.choice(len(rare), size=n_cust, p=_probs(zipf))
    c_email = np.where(u < 0.58, g_pick, np.where(u < 0.88, l_pick, r_pick))

    shops = build_merchants(rng, cfg, home_city_w)
    c_fav = shops.cp_by_city.draw(rng, c_city)

    return _World(
        **vars(shops),
        start=start,
        end=end,
        city_country=city_country,
        city_lat=city_lat,
        city_lon=city_lon,
        c_country=c_country,
        c_city=c_city,
        c_lat=c_lat,
        c_lon=c_lon,
        c_offset=city_offset[c_city],
        c_activity=c_activity,
        c_online=c_online,
        c_scale=c_scale,
        c_card0=c_card0,
        c_cards=c_cards,
        c_devices=c_devices,
        c_device=c_device,
        c_home_ip=c_home_ip,
        c_email=c_email,
        c_fav=c_fav,
        c_created=np.zeros(n_cust, dtype=np.int64),
        c_new=np.zeros(n_cust, dtype=bool),
        card_owner=card_owner,
        cat_ships=np.array([c[7] for c in _CATEGORIES]),
        domains=generic + local_flat + rare,
        n_generic=len(generic),
        rare0=rare0,
        c_trip_start=np.full(n_cust, _NEVER, dtype=np.int64),
        c_trip_end=np.full(n_cust, _NEVER, dtype=np.int64),
        c_trip_city=np.full(n_cust, -1, dtype=np.int64),
        c_new_phone=np.full(n_cust, _NEVER, dtype=np.int64),
        c_cred_before=np.full(n_cust, _NAT, dtype=np.int64),
        changes_cust=np.zeros(0, dtype=np.int64),
        changes_at=np.zeros(0, dtype=np.int64),
    )


def _timelines(
    rng: np.random.Generator, cfg: SimulationConfig, w: _World, ts: np.ndarray, cust: np.ndarray
) -> None:
    """Trips abroad, new phones and credential changes: legitimate look-alikes of fraud signals.

    `ts` and `cust` are the genuine payments' times and customers: some customers reset a
    forgotten password at checkout, minutes before paying, just as an account taker would.
    """
    n_cust = len(w.c_country)
    period = w.end - w.start
    scale = cfg.days / 90
    # trips: some customers spend 3-14 days abroad (foreign merchants and IP addresses)
    dest_w = dict(_TRAVEL_DESTINATIONS)
    city_dest_w = _probs([dest_w.get(c[0], 0.0) * c[4] for c in _CITIES])
    pick1 = rng.choice(len(_CITIES), size=n_cust, p=city_dest_w)
    pick2 = rng.choice(len(_CITIES), size=n_cust, p=city_dest_w)
    dest = np.where(w.city_country[pick1] != w.c_country, pick1, pick2)
    travels = (rng.random(n_cust) < min(0.6, 0.2 * scale)) & (w.city_country[dest] != w.c_country)
    trip_start = w.start + rng.integers(0, period, n_cust)
    trip_len = rng.integers(3 * _DAY, 15 * _DAY, n_cust)
    w.c_trip_start = np.where(travels, trip_start, _NEVER)
    w.c_trip_end = np.where(travels, trip_start + trip_len, _NEVER)
    w.c_trip_city = np.where(travels, dest, -1)

    # new phones: from that moment the customer's main device has a new id
    lo = np.maximum(w.c_created, w.start)
    new_phone = (rng.random(n_cust) < min(0.2, 0.02 * scale)) & (lo < w.end - _HOUR)
    phone_at = lo + (rng.random(n_cust) * (w.end - lo)).astype(np.int64)
    w.c_new_phone = np.where(new_phone, phone_at, _NEVER)

    # credentials: changed before the period for some; during it with a new phone or a reset
    before = (rng.random(n_cust) < 0.35) & ~w.c_new
    before_at = w.c_created + (rng.random(n_cust) * (w.start - w.c_created)).astype(np.int64)
    w.c_cred_before = np.where(before, before_at, _NAT)
    with_phone = new_phone & (rng.random(n_cust) < 0.7)
    phone_change = np.maximum(phone_at - rng.integers(0, 2 * _HOUR, n_cust), lo)
    reset = ~with_phone & (rng.random(n_cust) < min(0.3, 0.03 * scale)) & (lo < w.end)
    reset_at = lo + (rng.random(n_cust) * (w.end - lo)).astype(np.int64)
    who = np.flatnonzero(with_phone | reset)
    n_checkout = min(round(0.08 * scale * n_cust), len(ts))
    at_checkout = rng.choice(len(ts), size=n_checkout, replace=False)
    before_paying = np.exp(rng.uniform(np.log(2 * _MINUTE), np.log(3 * _HOUR), n_checkout))
    checkout_cust = cust[at_checkout]
    checkout_at = np.maximum(
        ts[at_checkout] - before_paying.astype(np.int64), w.c_created[checkout_cust]
    )
    w.changes_cust = np.concatenate([who, checkout_cust])
    w.changes_at = np.concatenate([np.where(with_phone, phone_change, reset_at)[who], checkout_at])


def _usual_device(w: _World, cust: np.ndarray, k: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Raw id of the customer's k-th usual device at ts (a new phone replaces device 0)."""
    replaced = (k == 0) & (ts >= w.c_new_phone[cust])
    return np.where(replaced, cust * 4 + 3, w.c_device[cust, k])
