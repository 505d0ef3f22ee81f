"""Genuine payments: channel, merchant, amount, device, IP, shipping and 3-D Secure of each, with
the legitimate look-alikes of every fraud signal."""

from __future__ import annotations

import numpy as np

from data.simulator.arrays import _country_choice
from data.simulator.population import _usual_device, _World
from data.simulator.rows import _Rows
from data.simulator.tables import (
    _AUTH_FAILED,
    _AUTH_NOT_ATTEMPTED,
    _AUTH_PASSED,
    _DEV_ONE_OFF,
    _HOME_COUNTRIES,
    _IP_CARRIER,
    _IP_TRAVEL,
    _IP_VPN,
    _VPN_COUNTRIES,
    _cidx,
)


def _legit(
    rng: np.random.Generator,
    w: _World,
    ts: np.ndarray,
    cust: np.ndarray,
    hour: np.ndarray,
    surge: np.ndarray,
    row0: int,
) -> _Rows:
    """Attributes of genuine payments whose time and customer are known."""
    n = len(ts)
    trip = (ts >= w.c_trip_start[cust]) & (ts < w.c_trip_end[cust])
    home = w.c_country[cust]

    p = w.c_online[cust]
    p = np.where((hour < 6) | (hour >= 22), 1 - (1 - p) * 0.6, p)
    p = np.where(surge, 1 - (1 - p) * 0.5, p)  # the promotion is mostly online
    p = np.where(trip, p * 0.5, p)
    online = rng.random(n) < p

    # merchants: shops near home (often the favourite one) or at the destination; web shops
    merch = np.empty(n, dtype=np.int64)
    city = np.where(trip, w.c_trip_city[cust], w.c_city[cust])
    fav = ~online & ~trip & (rng.random(n) < 0.35)
    shop = ~online & ~fav
    merch[fav] = w.c_fav[cust[fav]]
    merch[shop] = w.cp_by_city.draw(rng, city[shop])
    domestic = online & (rng.random(n) < 0.7) & w.online_by_country.has(home)
    merch[domestic] = w.online_by_country.draw(rng, home[domestic])
    abroad = online & ~domestic
    merch[abroad] = w.online_all.draw(rng, np.zeros(int(abroad.sum()), dtype=np.int64))

    # amounts: the merchant's ticket, the customer's habits, bigger promotion baskets, one-offs
    eur = w.m_ticket[merch] * w.c_scale[cust] * rng.lognormal(0.0, 0.55, n)
    eur *= np.where(surge, rng.lognormal(np.log(1.35), 0.2, n), 1.0)
    eur = np.where(rng.random(n) < 0.006, eur * rng.uniform(4.0, 12.0, n), eur)

    # devices: usual ones (mostly the first), borrowed ones (more on surge days), none
    u = rng.random(n)
    n_dev = w.c_devices[cust]
    cut1 = np.array([1.0, 1.0, 0.72, 0.65])[n_dev]
    cut2 = np.array([1.0, 1.0, 1.0, 0.90])[n_dev]
    k = (u >= cut1).astype(np.int64) + (u >= cut2)
    device = _usual_device(w, cust, k, ts)
    one_off = rng.random(n) < np.where(surge, 0.04, 0.007)
    friend = w.c_device[rng.integers(0, len(w.c_device), n), 0]  # a friend's phone
    borrowed = np.where(rng.random(n) < 0.5, friend, _DEV_ONE_OFF + row0 + np.arange(n))
    device = np.where(one_off, borrowed, device)
    no_print = rng.random(n) < 0.02
    wallet = ~online & (rng.random(n) < 0.3)
    device = np.where(wallet, _usual_device(w, cust, np.zeros(n, np.int64), ts), device)
    device = np.where((online & ~no_print) | wallet, device, -1)

    # IP: home wi-fi or a carrier's shared address; hotel wi-fi abroad; some VPN users
    vpn = online & ~trip & (rng.random(n) < 0.02)
    vpn_country = _country_choice(rng, _VPN_COUNTRIES, n)
    trip_city = np.maximum(w.c_trip_city[cust], 0)
    ip_country = np.where(trip, w.city_country[trip_city], home)
    ip_country = np.where(vpn, vpn_country, ip_country)
    ip = np.where(
        rng.random(n) < 0.55,
        w.c_home_ip[cust],
        _IP_CARRIER + home * 1_000_000 + rng.integers(0, 2000, n),
    )
    ip = np.where(trip, _IP_TRAVEL + trip_city * 1_000_000 + rng.integers(0, 5000, n), ip)
    ip = np.where(vpn, _IP_VPN + rng.integers(0, 3000, n), ip)
    ip = np.where(online, ip, -1)
    ip_country = np.where(online, ip_country, -1)

    # shipping: goods bought online go home, a few are gifts sent elsewhere
    ships = online & w.cat_ships[w.m_cat[merch]]
    gift = rng.random(n) < 0.04
    gift_to = _country_choice(rng, _HOME_COUNTRIES, n)
    ship = np.where(ships, np.where(gift, gift_to, home), -1)

    # 3-D Secure: small amounts and US merchants often skip it; a few failures still go through
    u = rng.random(n)
    skip = np.where(eur < 30, 0.55, 0.17)
    skip = np.where(w.m_country[merch] == _cidx("US"), 0.8, skip)
    auth = np.where(
        u < skip, _AUTH_NOT_ATTEMPTED, np.where(u < skip + 0.02, _AUTH_FAILED, _AUTH_PASSED)
    )
    auth = np.where(online, auth, -1)

    email = np.where(
        online & (rng.random(n) < 0.03), rng.integers(0, w.n_generic, n), w.c_email[cust]
    )
    second = (w.c_cards[cust] == 2) & (rng.random(n) < 0.25)
    return _Rows.unlabelled(
        "legit",
        cust=cust,
        card=w.c_card0[cust] + second,
        merch=merch,
        ts=ts,
        eur=eur,
        online=online,
        device=device,
        ip=ip,
        ip_country=ip_country,
        ship=ship,
        auth=auth,
        email=email,
    )
