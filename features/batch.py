"""Whole table -> feature frame, point-in-time correct and vectorised.

Payments are put in (timestamp, transaction_id) order once. For each entity the rows are then
grouped (a stable sort keeps time order inside a group) and every window becomes a pair of
indices found by binary search on a (group, time rank) key, so counts and sums are differences
of cumulative sums. Amounts are summed as integer cents: the sums are exact, which is what lets
the online executor agree to the last bit. A payment never sees itself or anything after it,
and label features see a label only once its `label_time` has passed.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.registry import ENTITY_COLUMN, FEATURES, Feature, available
from features.transforms import (
    AUTH_IS,
    MISMATCHES,
    NS_PER_DAY,
    NS_PER_S,
    ROW_TRANSFORMS,
    category_code,
    haversine_km,
)

_ROW_TIMESTAMPS = ("account_created_at", "credential_changed_at")


def to_ns(series: pd.Series) -> np.ndarray:
    """UTC timestamps -> int64 ns since the epoch (NaT must be handled by the caller)."""
    return series.to_numpy(dtype="datetime64[ns]").view(np.int64)


def optional_ns(series: pd.Series) -> np.ndarray:
    """Optional timestamps -> float64 ns with NaN for missing (what row transforms expect)."""
    out = to_ns(series).astype(np.float64)
    out[series.isna().to_numpy()] = np.nan
    return out


def to_cents(amount: np.ndarray) -> np.ndarray:
    """Amounts as exact integer cents (round half to even, as Python's round does)."""
    return np.rint(np.asarray(amount, dtype=np.float64) * 100.0).astype(np.int64)


def _codes(values: pd.Series) -> np.ndarray:
    codes, _ = pd.factorize(values, use_na_sentinel=True)
    return codes.astype(np.int64)


def _stable_argsort_codes(codes: np.ndarray) -> np.ndarray:
    """Stable argsort of non-negative integer codes below 2**32. numpy sorts 16-bit integers
    stably by radix (linear time), so codes are sorted by their low and then their high 16
    bits: two linear passes instead of a comparison sort of int64."""
    if len(codes) == 0 or int(codes.max()) < 1 << 16:
        return np.argsort(codes.astype(np.uint16), kind="stable")
    low = np.argsort((codes & 0xFFFF).astype(np.uint16), kind="stable")
    return low[np.argsort((codes[low] >> 16).astype(np.uint16), kind="stable")]


@dataclass
class _Grouped:
    """Rows of one entity, sorted by (group, time order); positions refer to time order."""

    pos: np.ndarray  # time-order position of each grouped element
    dest: np.ndarray  # the element's row in the caller's frame
    key: np.ndarray  # group * (n_ranks + 1) + time rank: sorted ascending
    group: np.ndarray
    n_ranks: int

    @classmethod
    def build(
        cls, codes: np.ndarray, rank: np.ndarray, n_ranks: int, order: np.ndarray
    ) -> _Grouped:
        order_rows = order
        keep = np.flatnonzero(codes >= 0)
        order = keep[_stable_argsort_codes(codes[keep])]
        group = codes[order]
        key = group * (n_ranks + 1) + rank[order]
        return cls(order, order_rows[order], key, group, n_ranks)

    def index_after(self, rank_bound: np.ndarray, group: np.ndarray | None = None) -> np.ndarray:
        """Per element (or per given group): index of the first element of the group with time
        rank >= rank_bound (the group's end when there is none)."""
        group = self.group if group is None else group
        return np.searchsorted(self.key, group * (self.n_ranks + 1) + rank_bound, "left")


class _Context:
    """Shared, sorted inputs for one batch run."""

    def __init__(self, frame: pd.DataFrame) -> None:
        ts_raw = to_ns(frame["timestamp"])
        order = _time_order(ts_raw, frame["transaction_id"])
        self.order = order
        self.frame = frame
        self.ts = ts_raw[order]
        first = np.ones(len(self.ts), dtype=bool)
        first[1:] = self.ts[1:] != self.ts[:-1]
        self.uniq = self.ts[first]  # sorted already: no hashing needed
        self.rank = np.cumsum(first) - 1
        self.n = len(order)
        self._groups: dict[str, _Grouped] = {}
        self._cents: np.ndarray | None = None
        self._rank_after: dict[int, np.ndarray] = {}
        self._starts: dict[tuple[str, int], np.ndarray] = {}
        self._csums: dict[str, np.ndarray] = {}
        self._entity_cents: dict[str, np.ndarray] = {}
        self._entity_ts: dict[str, np.ndarray] = {}
        self._frauds: dict[tuple[str, int, int], np.ndarray] = {}
        self.out: np.ndarray | None = None  # where _scatter writes, if set
        self._labels: np.ndarray | None = None
        self._label_begin: dict[tuple[str, int], tuple[np.ndarray, ...]] = {}
        self._codes: dict[str, np.ndarray] = {}
        self._floats: dict[str, np.ndarray] = {}
        self._previous: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}

    def col(self, name: str) -> pd.Series:
        return self.frame[name].iloc[self.order].reset_index(drop=True)

    @property
    def cents(self) -> np.ndarray:
        if self._cents is None:
            self._cents = to_cents(self.col("amount").to_numpy())
        return self._cents

    def entity_ts(self, entity: str) -> np.ndarray:
        """Timestamps of the entity's grouped elements."""
        if entity not in self._entity_ts:
            self._entity_ts[entity] = self.ts[self.entity(entity).pos]
        return self._entity_ts[entity]

    def entity_cents(self, entity: str) -> np.ndarray:
        """Amounts (cents) of the entity's grouped elements."""
        if entity not in self._entity_cents:
            self._entity_cents[entity] = self.cents[self.entity(entity).pos]
        return self._entity_cents[entity]

    def csum(self, entity: str) -> np.ndarray:
        """Cumulative cents of the entity's grouped elements, with a leading 0: the sum of
        elements [a, b) is csum[b] - csum[a]."""
        if entity not in self._csums:
            self._csums[entity] = np.concatenate(([0], np.cumsum(self.entity_cents(entity))))
        return self._csums[entity]

    def known_fraud_times(self) -> tuple[np.ndarray, np.ndarray]:
        """Per payment (time order): whether it is labelled fraud with a label time, and that
        label time (int64 ns; meaningless where not)."""
        if self._labels is None:
            fraud = self.col("is_fraud").to_numpy(dtype=np.float64, na_value=np.nan) == 1
            lt_col = self.col("label_time")
            missing = lt_col.isna().to_numpy()
            lt = to_ns(lt_col)
            self._labels = np.stack((fraud & ~missing, lt))
        return self._labels[0].astype(bool), self._labels[1]

    def grouped(self, name: str, codes: Callable[[], np.ndarray]) -> _Grouped:
        if name not in self._groups:
            self._groups[name] = _Grouped.build(codes(), self.rank, len(self.uniq), self.order)
        return self._groups[name]

    def entity(self, entity: str) -> _Grouped:
        return self.grouped(entity, lambda: self.codes(ENTITY_COLUMN[entity]))

    def codes(self, name: str) -> np.ndarray:
        """Integer codes of a text column, in time order (-1 for missing); cached, read-only."""
        if name not in self._codes:
            codes = _codes(self.frame[name])[self.order]
            codes.flags.writeable = False
            self._codes[name] = codes
        return self._codes[name]

    def floats(self, name: str) -> np.ndarray:
        """A numeric column as float64 in time order (NaN for missing); cached, read-only."""
        if name not in self._floats:
            values = self.col(name).to_numpy(dtype=np.float64, na_value=np.nan)
            values.flags.writeable = False
            self._floats[name] = values
        return self._floats[name]

    def rank_after(self, bound_ns: np.ndarray) -> np.ndarray:
        """Time rank of the first timestamp strictly greater than each bound."""
        return np.searchsorted(self.uniq, bound_ns, "right")

    def window_rank(self, window_s: int) -> np.ndarray:
        """Per payment (time order): rank of the first timestamp > t - window. The queries are
        sorted, so the binary searches walk memory in order; cached per window."""
        if window_s not in self._rank_after:
            self._rank_after[window_s] = self.rank_after(self.ts - window_s * NS_PER_S)
        return self._rank_after[window_s]

    def window_start(self, g: _Grouped, window_s: int) -> np.ndarray:
        """Per grouped element: index of the first prior element with ts > t - window."""
        key = (str(id(g)), window_s)
        if key not in self._starts:
            self._starts[key] = g.index_after(self.window_rank(window_s)[g.pos])
        return self._starts[key]


def _time_order(ts: np.ndarray, ids: pd.Series) -> np.ndarray:
    """Row order by (timestamp, transaction_id). A stable sort on time, then only the runs of
    equal timestamps are re-sorted by id (ties are rare, string sorting is slow)."""
    order = np.argsort(ts, kind="stable")
    ts_sorted = ts[order]
    tie = np.zeros(len(ts), dtype=bool)
    same = ts_sorted[1:] == ts_sorted[:-1]
    tie[1:] |= same
    tie[:-1] |= same
    if tie.any():
        idx = np.flatnonzero(tie)
        sub = order[idx]
        id_rank, _ = pd.factorize(ids.to_numpy()[sub], sort=True)
        order[idx] = sub[np.lexsort((id_rank, ts_sorted[idx]))]
    return order


def _scatter(ctx: _Context, g: _Grouped, values: np.ndarray) -> np.ndarray:
    """Grouped-order values -> an array in the caller's row order (NaN where no entity),
    written into `ctx.out` when the caller provided it (the result column)."""
    out = ctx.out if ctx.out is not None and len(ctx.out) == ctx.n else np.empty(ctx.n)
    if len(g.dest) < ctx.n:
        out.fill(np.nan)
    out[g.dest] = values
    return out


def _window_matrix(
    starts: np.ndarray, stops: np.ndarray, values: np.ndarray, pad: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Gather values[starts[i]:stops[i]] as padded rows, bucketed by width.

    Yields (row indices, matrix, widths) per chunk; padding is `pad`, large enough to sort last.
    A bucket's width is the row width rounded up to a quarter of its power of two (exact up to
    7), so padding stays under a quarter of the cells. Rows are copied whole out of a sliding
    window view (contiguous reads, no index matrix) and the cells past a row's width are then
    overwritten with `pad`. Chunks hold at most a few million cells, so memory stays flat even
    for busy entities.
    """
    widths = stops - starts
    nonempty = np.flatnonzero(widths > 0)
    if len(nonempty) == 0:
        return
    w = widths[nonempty]
    shift = np.maximum(np.frexp(w)[1] - 3, 0)  # frexp's exponent is the bit length
    bucket = ((w + (1 << shift) - 1) >> shift) << shift
    # room for a full row after any start: the tail is overwritten with `pad` anyway
    ext = np.concatenate((values, np.full(int(bucket.max()), pad, dtype=values.dtype)))
    by_width = np.argsort(bucket, kind="stable")
    sorted_widths = bucket[by_width]
    edges = np.flatnonzero(np.diff(sorted_widths)) + 1
    for part in np.split(by_width, edges):
        rows = nonempty[part]
        width = int(bucket[part[0]])
        view = np.lib.stride_tricks.sliding_window_view(ext, width)
        offs = np.arange(width)
        for chunk in np.array_split(rows, max(1, len(rows) * width // 4_000_000 + 1)):
            mat = view[starts[chunk]]
            np.copyto(mat, pad, where=offs[None, :] >= widths[chunk, None])
            yield chunk, mat, widths[chunk]


def _amount_stats(ctx: _Context, f: Feature) -> np.ndarray:
    g = ctx.entity(f.entity)
    idx = np.arange(len(g.pos))
    start = ctx.window_start(g, f.window)
    cents = ctx.entity_cents(f.entity)
    n = idx - start
    csum = ctx.csum(f.entity)
    s = csum[:-1] - csum[start]
    a = cents
    with np.errstate(divide="ignore", invalid="ignore"):
        if f.aggregation == "sum":
            res = s / 100.0
        elif f.aggregation == "mean":
            res = np.where(n > 0, s / (100.0 * n), np.nan)
        elif f.aggregation == "mean_ratio":
            res = np.where((n > 0) & (s > 0), (a * n) / s, np.nan)
        elif f.aggregation == "zscore":
            # int64 cumulative sums of squares may wrap around; window differences stay exact.
            overflow = bool(len(n)) and int(n.max()) ** 2 * int(np.abs(cents).max()) ** 2 >= 2**62
            if overflow:  # e.g. IDR or VND amounts: exact Python integers instead of int64
                cents_o = cents.astype(object)
                csq = np.concatenate(([0], np.cumsum(cents_o * cents_o)))
                c1 = np.concatenate(([0], np.cumsum(cents_o)))
                s_o = c1[idx] - c1[start]
                n_o = n.astype(object)
                var_o = n_o * (csq[idx] - csq[start]) - s_o * s_o
                num = (n_o * cents_o - s_o).astype(np.float64)
                var_n2 = var_o.astype(np.float64)
            else:
                csq = np.concatenate(([0], np.cumsum(cents * cents)))
                ss = csq[idx] - csq[start]
                var_n2 = n * ss - s * s  # n^2 * variance, exact in integers
                num = (n * a - s).astype(np.float64)
            res = np.where((n >= 2) & (var_n2 > 0), num / np.sqrt(var_n2), np.nan)
        elif f.aggregation == "median_ratio":
            med = np.full(len(idx), np.nan)
            pad = np.iinfo(np.int64).max
            for rows, mat, w in _window_matrix(start, idx, cents, pad):
                mat.sort(axis=1)
                lo = mat[np.arange(len(rows)), (w - 1) // 2]
                hi = mat[np.arange(len(rows)), w // 2]
                med[rows] = (lo + hi) / 2
            res = np.where(med > 0, a / med, np.nan)
        else:  # count
            res = n.astype(np.float64)
    return _scatter(ctx, g, res)


def _count(ctx: _Context, f: Feature) -> np.ndarray:
    g = ctx.entity(f.entity)
    start = ctx.window_start(g, f.window)
    return _scatter(ctx, g, (np.arange(len(g.pos)) - start).astype(np.float64))


def _since_first(ctx: _Context, f: Feature) -> np.ndarray:
    """Days since the entity's first payment inside the window (NaN when there is none)."""
    g = ctx.entity(f.entity)
    idx = np.arange(len(g.pos))
    start = ctx.window_start(g, f.window)
    t = ctx.entity_ts(f.entity)
    days = (t - t[np.minimum(start, len(t) - 1)]) / NS_PER_DAY
    return _scatter(ctx, g, np.where(start < idx, days, np.nan))


def _previous(ctx: _Context, f: Feature) -> np.ndarray:
    g = ctx.entity(f.entity)
    idx = np.arange(len(g.pos))
    has_prev = ctx.window_start(g, f.window) < idx
    prev = np.maximum(idx - 1, 0)
    # seconds and distance to the previous element: shared by the entity's three features
    dt_s, dist = ctx._previous.get(f.entity, (None, None))
    if dt_s is None:
        t = ctx.entity_ts(f.entity)
        dt_s = (t - t[prev]) / NS_PER_S
    if f.aggregation != "since_prev" and dist is None:
        lat = ctx.floats("merchant_lat")[g.pos]
        lon = ctx.floats("merchant_lon")[g.pos]
        dist = haversine_km(lat[prev], lon[prev], lat, lon)
    ctx._previous[f.entity] = (dt_s, dist)
    if f.aggregation == "since_prev":
        res = dt_s
    else:
        assert dist is not None
        res = dist if f.aggregation == "prev_distance" else dist / (np.maximum(dt_s, 60.0) / 3600)
    return _scatter(ctx, g, np.where(has_prev, res, np.nan))


def _distinct_cards(ctx: _Context, f: Feature) -> np.ndarray:
    """Distinct cards in the window, this payment included, in O(n log n) without gathering.

    An element k whose card already appeared at prv_k (same group) is a duplicate for every
    later element i whose window still contains prv_k. Window starts never decrease in grouped
    order, so those i form an interval [k, e_k): add +1/-1 there and take a cumulative sum.
    """
    g = ctx.entity(f.entity)
    m = len(g.pos)
    idx = np.arange(m)
    start = ctx.window_start(g, f.window)
    cards = ctx.codes("card_id")[g.pos]
    by_card = np.lexsort((idx, cards, g.group))
    prv = np.full(m, -1)
    same = (g.group[by_card][1:] == g.group[by_card][:-1]) & (
        cards[by_card][1:] == cards[by_card][:-1]
    )
    prv[by_card[1:][same]] = by_card[:-1][same]
    has = (prv >= 0) & (cards >= 0)
    k = idx[has]
    e = np.maximum(np.searchsorted(start, prv[has], "right"), k)
    diff = np.zeros(m + 1, dtype=np.int64)
    np.add.at(diff, k, 1)
    np.add.at(diff, e, -1)
    dup = np.cumsum(diff[:-1])
    res = np.where(cards >= 0, (idx - start + 1) - dup, np.nan).astype(np.float64)
    return _scatter(ctx, g, res)


def _pair_new(ctx: _Context, f: Feature) -> np.ndarray:
    def pair_codes() -> np.ndarray:
        cust = ctx.codes("customer_id")
        dev = ctx.codes("device_id")
        pair = cust * (dev.max(initial=-1) + 2) + dev
        codes = _codes(pd.Series(pair))
        codes[(dev < 0) | (cust < 0)] = -1
        return codes

    g = ctx.grouped("customer_device", pair_codes)
    start = ctx.window_start(g, f.window)
    return _scatter(ctx, g, (start == np.arange(len(g.pos))).astype(np.float64))


def _reached_at(ctx: _Context, g: _Grouped, group: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Per (group, point) pair: the index of the first element of the group with ts >= point,
    or the group's end (the next group's first index, or m) when there is none (two binary
    searches)."""
    return g.index_after(np.searchsorted(ctx.uniq, points, "left"), group)


def _label_stats(ctx: _Context, f: Feature) -> np.ndarray:
    """Known fraud (count, or per payment) at the entity with ts in (t - delay - window,
    t - delay], a fraud counting only once its label_time <= t."""
    g = ctx.entity(f.entity)
    delay, window = f.label_delay * NS_PER_S, f.window * NS_PER_S

    # A fraud label on payment j counts for payment p when p's time lies in
    # [max(ts_j + delay, label_time_j), ts_j + delay + window): an interval per label, so a
    # count is (intervals begun by t) - (intervals ended by t). The beginnings do not depend
    # on the window: counted once per (entity, delay).
    frauds = ctx._frauds.get((f.entity, f.label_delay, f.window))
    if frauds is None:
        frauds = _frauds(ctx, g, f.entity, delay, window)
        ctx._frauds[(f.entity, f.label_delay, f.window)] = frauds
    if f.aggregation == "label_count":
        return _scatter(ctx, g, frauds)
    lo = ctx.window_start(g, f.label_delay + f.window)
    payments = ctx.window_start(g, f.label_delay) - lo
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(payments > 0, frauds / payments, np.nan)
    return _scatter(ctx, g, rate)


def _frauds(ctx: _Context, g: _Grouped, entity: str, delay: int, window: int) -> np.ndarray:
    """Per grouped element i: the labels whose interval [begin, end) holds t_i. An interval
    covers the elements [at(begin), at(end)) of its own group (`_reached_at`; both places are
    clipped to the group's end, so at(begin) <= at(end) and nothing spills into the next
    group): +1 at the first, -1 at the second, and a cumulative sum counts."""
    m = len(g.pos)
    cache_key = (entity, delay)
    if cache_key not in ctx._label_begin:
        t = ctx.entity_ts(entity)
        fraud, lt = ctx.known_fraud_times()
        known = np.flatnonzero(fraud[g.pos])
        ts_f = t[known]
        begin = np.maximum(ts_f + delay, lt[g.pos[known]])
        group = g.group[known]
        begun = np.bincount(_reached_at(ctx, g, group, begin), minlength=m + 1)
        ctx._label_begin[cache_key] = (group, ts_f, begin, begun)
    group, ts_f, begin, begun = ctx._label_begin[cache_key]
    end = np.maximum(ts_f + delay + window, begin)  # a label known too late: an empty interval
    ended = np.bincount(_reached_at(ctx, g, group, end), minlength=m + 1)
    return np.cumsum(begun[:m] - ended[:m]).astype(np.float64)


_AGGREGATORS: dict[str, Callable[[_Context, Feature], np.ndarray]] = {
    "count": lambda ctx, f: _count(ctx, f),
    "sum": _amount_stats,
    "mean": _amount_stats,
    "mean_ratio": _amount_stats,
    "median_ratio": _amount_stats,
    "zscore": _amount_stats,
    "since_prev": _previous,
    "since_first": _since_first,
    "prev_distance": _previous,
    "prev_speed": _previous,
    "distinct_cards": _distinct_cards,
    "pair_new": _pair_new,
    "label_rate": _label_stats,
    "label_count": _label_stats,
}


def row_inputs(
    ctx_cols: Callable[[str], pd.Series],
    columns: Sequence[str],
    memo: dict[str, object] | None = None,
) -> dict[str, object]:
    """Contract columns in the form row transforms expect (see features.transforms); `memo`
    keeps conversions for the next call (text columns are slow to convert)."""
    out: dict[str, object] = {}
    for name in columns:
        if memo is not None and name in memo:
            out[name] = memo[name]
            continue
        s = ctx_cols(name)
        if name == "timestamp":
            out[name] = to_ns(s)
        elif name in _ROW_TIMESTAMPS:
            out[name] = optional_ns(s)
        elif pd.api.types.is_numeric_dtype(s.dtype):
            out[name] = s.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            out[name] = s.astype(object).where(s.notna(), None).to_numpy()
        if memo is not None:
            memo[name] = out[name]
    return out


_MMAP_MIN_BYTES = 1 << 24  # smaller result blocks come from numpy's allocator


def _result_block(rows: int, columns: int) -> np.ndarray:
    """An uninitialised float64 (rows, columns) block in column-major order, in memory mapped
    without transparent huge pages.

    numpy advises huge pages for large arrays; where the kernel defragments on demand for such
    regions (`transparent_hugepage/defrag` = madvise, the common default) a first touch of
    fresh huge pages can stall on memory compaction: filling a 1M x 82 block took 0.8-2.8 s
    on a 2-core machine against 0.3-0.5 s with ordinary pages. The mapping is released when
    the last array (or frame) using it goes.
    """
    nbytes = rows * columns * np.dtype(np.float64).itemsize
    if nbytes == 0 or nbytes < _MMAP_MIN_BYTES or not hasattr(mmap, "MAP_ANONYMOUS"):
        return np.empty((rows, columns), order="F")
    buf = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    return np.frombuffer(buf, dtype=np.float64).reshape((rows, columns), order="F")


class _RowCodes:
    """Text columns of the caller's frame (row order) as integer codes, for the row transforms
    that only compare text (`MISMATCHES`, `AUTH_IS`): the same values as those transforms on
    objects, without converting a million strings to Python objects. Codes are equal exactly
    when the texts are; missing is -1, as it is None (NaN out) for the transforms."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        self._done: dict[str, tuple[np.ndarray, pd.Index]] = {}

    def factorized(self, name: str) -> tuple[np.ndarray, pd.Index]:
        if name not in self._done:
            codes, uniques = pd.factorize(self.frame[name], use_na_sentinel=True)
            self._done[name] = (codes.astype(np.int64), pd.Index(uniques))
        return self._done[name]

    def mismatch(self, a: str, b: str) -> np.ndarray:
        codes_a, uniq_a = self.factorized(a)
        codes_b, uniq_b = self.factorized(b)
        # b's texts in a's code space; texts a never has get codes of their own
        mapped = uniq_a.get_indexer(uniq_b).astype(np.int64)
        unseen = mapped < 0
        mapped[unseen] = len(uniq_a) + np.arange(int(unseen.sum()))
        codes_b = np.append(mapped, -1)[codes_b]  # missing (-1) picks the -1 at the end
        out = (codes_a != codes_b).astype(np.float64)
        out[(codes_a < 0) | (codes_b < 0)] = np.nan
        return out

    def equals(self, name: str, value: str) -> np.ndarray:
        codes, uniques = self.factorized(name)
        at = uniques.get_indexer(pd.Index([value]))[0]  # -1 when no row has it: never equal
        out = (codes == at).astype(np.float64) if at >= 0 else np.zeros(len(codes))
        out[codes < 0] = np.nan
        return out

    def transform(self, name: str) -> np.ndarray | None:
        """The transform's values, or None when it is not a text comparison."""
        if name in MISMATCHES:
            return self.mismatch(*MISMATCHES[name])
        if name in AUTH_IS:
            return self.equals("auth_result", AUTH_IS[name])
        if name == "mcc_code":  # one code per distinct category, not per row
            codes, uniques = self.factorized("mcc")
            table = np.append(
                np.array([category_code(u) for u in uniques], dtype=np.float64), np.nan
            )
            return table[codes]  # missing (-1) picks the NaN at the end
        return None


def compute(
    frame: pd.DataFrame,
    features: Sequence[Feature] | None = None,
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Features for every payment of a validated contract frame, in the frame's row order.

    `features` defaults to every feature the frame's columns support. Returns a frame with
    `transaction_id` and one float64 column per feature.
    """
    if features is None:
        features = available(frame.columns).features
    frame = frame.reset_index(drop=True)
    ctx = _Context(frame)
    # One column-major block: each feature's column is contiguous and the frame wraps it as is.
    result = _result_block(len(frame), len(features))
    memo: dict[str, object] = {}
    row_codes = _RowCodes(frame)
    for j, f in enumerate(features):
        if progress is not None:
            progress(f.name)
        column = result[:, j]  # contiguous: aggregators write their values straight into it
        if f.aggregation == "row":  # row-local: no ordering needed
            coded = row_codes.transform(f.name)
            if coded is not None:
                column[:] = coded
                continue
            needed = list(dict.fromkeys(("timestamp", "amount", *f.columns)))
            column[:] = ROW_TRANSFORMS[f.name](row_inputs(frame.__getitem__, needed, memo))
        else:
            ctx.out = column
            values = _AGGREGATORS[f.aggregation](ctx, f)
            if values is not column:
                column[:] = values
    out = pd.DataFrame(result, columns=[f.name for f in features], copy=False)
    out.insert(0, "transaction_id", frame["transaction_id"].to_numpy())
    return out


__all__ = ["FEATURES", "compute"]
