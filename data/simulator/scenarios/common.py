"""What the fraud scenarios share: victims, event times, bursts, and the card-not-present rows
seen from the fraudster's side (their device, IP and drop address)."""

from __future__ import annotations

import numpy as np

from data.simulator.arrays import _country_choice, _probs, _top_k, _within
from data.simulator.config import SimulationConfig
from data.simulator.population import _World
from data.simulator.rows import _Rows
from data.simulator.surges import _day_weights
from data.simulator.tables import (
    _AUTH_FAILED,
    _AUTH_NOT_ATTEMPTED,
    _AUTH_PASSED,
    _DAY,
    _DEV_FRAUD,
    _FRAUD_COUNTRIES,
    _HOUR,
    _HOURS,
    _IP_FRAUD,
)


def _victims(rng: np.random.Generator, w: _World, n: int) -> np.ndarray:
    """Customers hit by fraud events: the busier a card, the likelier its data leaks."""
    old_enough = w.c_created < w.end - 2 * _DAY
    return _top_k(rng, np.where(old_enough, w.c_activity, 0.0), n)


def _event_times(
    rng: np.random.Generator, cfg: SimulationConfig, w: _World, cust: np.ndarray, lead: int
) -> np.ndarray:
    """Start of each fraud event: any day (a bit more on surge days), night hours more common.

    Starts at least `lead` ms after the victim's account was opened and a day before the end.
    """
    n = len(cust)
    day = rng.choice(cfg.days, size=n, p=_probs(_day_weights(cfg, 1.5)))
    hour = np.where(
        rng.random(n) < 0.5, rng.choice(24, size=n, p=_probs(_HOURS)), rng.integers(0, 24, n)
    )
    t0 = w.start + day * _DAY + hour * _HOUR + rng.integers(0, _HOUR, n) - _HOUR
    lo = np.maximum(w.c_created[cust] + lead, w.start)
    hi = w.end - _DAY
    redo = t0 < lo
    t0 = np.where(redo, lo + (rng.random(n) * np.maximum(hi - lo, 0)).astype(np.int64), t0)
    return np.clip(t0, w.start, hi)


def _burst_times(w: _World, t0: np.ndarray, sizes: np.ndarray, gaps: np.ndarray) -> np.ndarray:
    """Row times of bursts starting at t0 with the given gaps, shifted back to end in the period."""
    if len(sizes) == 0:
        return np.zeros(0, dtype=np.int64)
    ts = np.repeat(t0, sizes) + _within(gaps.astype(np.int64) + 1000, sizes)
    last = np.maximum.reduceat(ts, np.cumsum(sizes) - sizes)
    overflow = np.maximum(last - (w.end - 1), 0)
    return ts - np.repeat(overflow, sizes)


def _bursts(
    rng: np.random.Generator,
    w: _World,
    t0: np.ndarray,
    sizes: np.ndarray,
    gap_mean: float,
    gap_max: int,
) -> np.ndarray:
    """Row times for bursts starting at t0 with exponential gaps (capped at gap_max)."""
    gaps = np.minimum(rng.exponential(gap_mean, int(sizes.sum())), gap_max)
    return _burst_times(w, t0, sizes, gaps)


def _pick_card(rng: np.random.Generator, w: _World, cust: np.ndarray) -> np.ndarray:
    second = (w.c_cards[cust] == 2) & (rng.random(len(cust)) < 0.5)
    return w.c_card0[cust] + second


def _auth(rng: np.random.Generator, n: int, passed: float, failed: float) -> np.ndarray:
    u = rng.random(n)
    return np.where(
        u < passed, _AUTH_PASSED, np.where(u < passed + failed, _AUTH_FAILED, _AUTH_NOT_ATTEMPTED)
    )


def _fraud_email(rng: np.random.Generator, w: _World, cust: np.ndarray, own: float) -> np.ndarray:
    """The victim's e-mail domain, or one the fraudster typed in (webmail or a throwaway)."""
    n = len(cust)
    webmail = rng.choice(np.array([0, 1, 6, 4]), size=n, p=[0.5, 0.2, 0.15, 0.15])
    throwaway = w.rare0 + rng.integers(0, len(w.domains) - w.rare0, n)
    theirs = np.where(rng.random(n) < 0.85, webmail, throwaway)
    return np.where(rng.random(n) < own, w.c_email[cust], theirs)


def _remote_fraud(
    rng: np.random.Generator,
    w: _World,
    cust: np.ndarray,
    ts: np.ndarray,
    merch: np.ndarray,
    eur: np.ndarray,
    sizes: np.ndarray,
    *,
    home_ip: float,
    no_device: float,
    ship_home: float,
    own_email: float,
    auth: np.ndarray,
    scenario: str,
) -> _Rows:
    """Card-not-present fraud rows from the fraudster's side: their device, IP and drop address.

    Per event (burst) one device and IP; a share goes through a proxy in the victim's country
    or shows no device fingerprint, so neither signal alone gives the fraud away.
    """
    n_ev = len(sizes)
    n = int(sizes.sum())
    n_devices = max(20, n // 4)
    ev_cust = cust[np.cumsum(sizes) - sizes] if n_ev else cust
    ev_device = np.where(
        rng.random(n_ev) < no_device, -1, _DEV_FRAUD + rng.integers(0, n_devices, n_ev)
    )
    proxied = rng.random(n_ev) < home_ip
    abroad = _country_choice(rng, _FRAUD_COUNTRIES, n_ev)
    ev_ip_country = np.where(proxied, w.c_country[ev_cust], abroad)
    ev_ip = _IP_FRAUD + rng.integers(0, max(50, n // 3), n_ev)
    drop = np.where(rng.random(n_ev) < ship_home, w.c_country[ev_cust], abroad)
    ev_email = _fraud_email(rng, w, ev_cust, own_email)
    ships = w.cat_ships[w.m_cat[merch]]
    return _Rows.unlabelled(
        scenario,
        cust=cust,
        card=np.repeat(_pick_card(rng, w, ev_cust), sizes),
        merch=merch,
        ts=ts,
        eur=eur,
        online=np.ones(n, dtype=bool),
        device=np.repeat(ev_device, sizes),
        ip=np.repeat(ev_ip, sizes),
        ip_country=np.repeat(ev_ip_country, sizes),
        ship=np.where(ships, np.repeat(drop, sizes), -1),
        auth=auth,
        email=np.repeat(ev_email, sizes),
    )
