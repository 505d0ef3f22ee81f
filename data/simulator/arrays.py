"""Small vectorised helpers: weighted draws, burst sizes, per-group pools, ids and labels as
Arrow strings, int64 milliseconds as UTC timestamps."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from data.simulator.tables import _NAT, _cidx


def _probs(weights: Sequence[float] | np.ndarray) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    return w / w.sum()


def _country_choice(
    rng: np.random.Generator, table: Sequence[tuple[str, float]], n: int
) -> np.ndarray:
    """n country positions drawn from a (code, weight) table."""
    codes = np.array([_cidx(c) for c, _ in table], dtype=np.int64)
    return rng.choice(codes, size=n, p=_probs([x for _, x in table]))


def _allocate(total: int, shares: Sequence[float]) -> np.ndarray:
    """Split `total` into integer parts proportional to `shares` (largest remainder, exact)."""
    raw = np.asarray(shares, dtype=np.float64) * total
    out = np.floor(raw).astype(np.int64)
    rest = total - int(out.sum())
    order = np.argsort(-(raw - out), kind="stable")
    out[order[:rest]] += 1
    return out


def _top_k(rng: np.random.Generator, weights: np.ndarray, k: int) -> np.ndarray:
    """k distinct indices drawn with probability proportional to `weights` (exponential keys).

    Falls back to drawing with replacement when fewer than k indices have weight.
    """
    positive = int((weights > 0).sum())
    keys = rng.exponential(size=len(weights)) / np.where(weights > 0, weights, np.nan)
    if k <= positive:
        keys = np.where(np.isnan(keys), np.inf, keys)
        return np.argsort(keys, kind="stable")[:k]
    return rng.choice(len(weights), size=k, p=_probs(weights))


def _burst_sizes(
    rng: np.random.Generator, target: int, draw: Callable[[int], np.ndarray], min_last: int = 1
) -> np.ndarray:
    """Sizes of bursts (payments per fraud event) that add up to exactly `target` rows."""
    if target <= 0:
        return np.zeros(0, dtype=np.int64)
    sizes = np.maximum(draw(target).astype(np.int64), 1)  # target sizes >= 1 always suffice
    cum = np.cumsum(sizes)
    k = int(np.searchsorted(cum, target))
    sizes = sizes[: k + 1].copy()
    sizes[-1] -= int(cum[k]) - target
    if len(sizes) > 1 and sizes[-1] < min_last:
        sizes[-2] += sizes[-1]
        sizes = sizes[:-1]
    return sizes


def _within(values: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Running sum of `values` inside each burst, starting at 0 on each burst's first row."""
    starts = np.cumsum(sizes) - sizes
    v = values.astype(np.int64).copy()
    v[starts] = 0
    c = np.cumsum(v)
    return c - np.repeat(c[starts], sizes)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a bijection on uint64, so distinct raw ids get distinct hashes."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _fixed_width(prefix: str, body: np.ndarray, missing: np.ndarray | None) -> pa.Array:
    """Strings `prefix + body row` from an (n, width) uint8 ASCII matrix, without a Python loop."""
    head = np.frombuffer(prefix.encode("ascii"), dtype=np.uint8)
    buf = np.empty((body.shape[0], len(head) + body.shape[1]), dtype=np.uint8)
    buf[:, : len(head)] = head
    buf[:, len(head) :] = body
    flat = buf.view(f"S{buf.shape[1]}").ravel()
    return pa.array(flat, type=pa.binary(), mask=missing).cast(pa.string())


def _decimal_ids(prefix: str, values: np.ndarray, width: int) -> pa.Array:
    """Zero-padded decimal ids, so their string order is their numeric order."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    body = ((values.astype(np.int64)[:, None] // powers) % 10 + 48).astype(np.uint8)
    return _fixed_width(prefix, body, None)


def _hex_ids(prefix: str, codes: np.ndarray, salt: np.uint64) -> pa.Array:
    """Keyed-hash-looking ids (16 hex digits) for raw codes; negative codes are missing."""
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    byte = np.arange(256)
    pairs = np.stack([digits[byte >> 4], digits[byte & 15]], axis=1)  # byte -> two hex digits
    h = _mix64(codes.astype(np.int64).view(np.uint64) ^ salt)
    big_endian = h.astype(">u8").view(np.uint8).reshape(len(h), 8)
    body = pairs[big_endian].reshape(len(h), 16)
    # 16 decimal digits would read as a card number (and be refused) for one id in ten: a
    # hash that came out all digits gets a letter first (about one id in 2,000)
    digits_only = (body < ord("a")).all(axis=1)
    body[digits_only, 0] = ord("a") + (body[digits_only, 0] - ord("0")) % 6
    return _fixed_width(prefix, body, codes < 0)


def _labels(values: Sequence[str], codes: np.ndarray) -> pd.Series:
    """Text column from positions into `values`; negative positions are missing."""
    table = pa.array(list(values), type=pa.string())
    idx = pa.array(codes.astype(np.int64), mask=codes < 0)
    return pd.Series(table.take(idx), dtype="str")


def _utc(ms: np.ndarray) -> pd.Series:
    """int64 milliseconds since the epoch (or _NAT) as datetime64[ns, UTC]."""
    missing = ms == _NAT
    ns = np.where(missing, 0, ms).astype(np.int64) * 1_000_000
    out = ns.view("datetime64[ns]").copy()
    out[missing] = np.datetime64("NaT")
    return pd.Series(out).dt.tz_localize("UTC")


class _Pool:
    """Draw one item per row from that row's group (a city, a country), weighted, vectorised.

    Items are sorted by group and their weights turned into keys `group + cumulative share`,
    so a single `searchsorted` on `group + U(0, 1)` draws from the right group for every row.
    """

    def __init__(self, group: np.ndarray, weight: np.ndarray, n_groups: int) -> None:
        keep = np.flatnonzero(weight > 0)
        if len(keep) == 0:
            raise ValueError("a merchant pool is empty")  # cannot happen: pools are seeded
        order = keep[np.argsort(group[keep], kind="stable")]
        g = group[order].astype(np.int64)
        w = weight[order].astype(np.float64)
        self.total = np.bincount(g, weights=w, minlength=n_groups)
        cum = np.cumsum(w)
        change = g[1:] != g[:-1]
        first = np.r_[True, change]
        base = np.repeat(cum[first] - w[first], np.diff(np.r_[np.flatnonzero(first), len(g)]))
        within = (cum - base) / self.total[g]
        within[np.r_[change, True]] = 1.0  # exactly 1 at a group's end: no spill into the next
        self.keys = g + within
        self.items = order

    def has(self, groups: np.ndarray) -> np.ndarray:
        """Which rows' groups have at least one item to draw."""
        return self.total[groups] > 0

    def draw(self, rng: np.random.Generator, groups: np.ndarray) -> np.ndarray:
        """One item per row; every row's group must be non-empty (see `has`)."""
        u = rng.random(len(groups))
        idx = np.searchsorted(self.keys, groups.astype(np.float64) + u, side="right")
        return self.items[np.minimum(idx, len(self.items) - 1)]
