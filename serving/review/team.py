"""A discrete-event model of the review team: what a policy's reviews do to hold times. Pure.

A policy decides approve / review / decline per payment; reviewed payments are held until a
reviewer has looked at them. Reviewers work shifts (hours of the day, UTC), take one case at a
time, and pick either the oldest waiting case (FIFO, today's practice with rules) or the one
with the most money at risk (riskgate: probability x amount). Handling times are lognormal and
drawn per case from one seeded generator, so equal inputs give equal results.

Times are float seconds since the Unix epoch (UTC); a datetime column is converted. A reviewer
who is on a case when the shift ends finishes it, but starts nothing new off shift; that
overtime counts neither as on-shift time nor as on-shift work, so utilisation stays in [0, 1].

A review stops only fraud a review can reveal. First-party ("friendly") fraud is the
cardholders themselves, on their own device, home IP and usual address: the reviewer (or a call
to the cardholder) confirms the purchase and approves it, and it is known only from a later
chargeback. Such payments are marked `stoppable = False`; the reviewer declines a fraudulent
payment only if it is stoppable (and then with probability `TeamConfig.accuracy`).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from serving.scoring.capacity import CapacityConfig, CapacityGovernor

DAY_S = 86_400.0
HOUR_S = 3_600.0
MIN_S = 60.0
ACTIONS = ("approve", "review", "decline")
STOPPABLE = "stoppable"  # optional column: False for fraud no review can stop (friendly fraud)


# === team =====================================================================================
@dataclass(frozen=True)
class Shift:
    """`reviewers` people working [start_hour, end_hour) UTC every day.

    end <= start wraps past midnight (20 -> 8 is a night shift); end == start is all day.
    """

    start_hour: float
    end_hour: float
    reviewers: int

    def __post_init__(self) -> None:
        for name in ("start_hour", "end_hour"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and 0 <= v <= 24):
                raise ValueError(f"shift {name} must be an hour in [0, 24], got {v!r}")
        if not isinstance(self.reviewers, int) or self.reviewers < 0:
            raise ValueError(f"shift reviewers must be an integer >= 0, got {self.reviewers!r}")

    @property
    def windows(self) -> tuple[tuple[float, float], ...]:
        """The shift's [start, end) windows within one day, in seconds of the day."""
        s, e = self.start_hour * HOUR_S % DAY_S, self.end_hour * HOUR_S % DAY_S
        if e > s:
            return ((s, e),)
        if e == s:
            return ((0.0, DAY_S),)
        return tuple(w for w in ((0.0, e), (s, DAY_S)) if w[1] > w[0])

    @property
    def daily_seconds(self) -> float:
        return sum(e - s for s, e in self.windows)

    def covers(self, t: np.ndarray | float) -> np.ndarray:
        """Whether the shift is on at time(s) t (seconds since the epoch)."""
        sod = np.mod(np.asarray(t, dtype=np.float64), DAY_S)
        on = np.zeros(sod.shape, dtype=bool)
        for s, e in self.windows:
            on |= (sod >= s) & (sod < e)
        return on

    def on_seconds_until(self, t: np.ndarray | float) -> np.ndarray:
        """On-shift seconds of one reviewer from the epoch up to t (a non-decreasing function)."""
        t = np.asarray(t, dtype=np.float64)
        days = np.floor(t / DAY_S)
        sod = t - days * DAY_S
        part = np.zeros(t.shape, dtype=np.float64)
        for s, e in self.windows:
            part += np.clip(sod, s, e) - s
        return days * self.daily_seconds + part

    def edges(self) -> tuple[tuple[float, bool], ...]:
        """(second of the day, is a start) of the shift's real starts and ends, in order.

        A wrapping shift's midnight is no change, and an all-day shift has none.
        """
        w = self.windows
        out: list[tuple[float, bool]] = []
        for s, e in w:
            if not (s == 0.0 and any(x[1] == DAY_S for x in w)):
                out.append((s, True))
            if not (e == DAY_S and any(x[0] == 0.0 for x in w)):
                out.append((e, False))
        return tuple(sorted(out))

    def next_change(self, t: float) -> tuple[float, bool]:
        """The first shift start or end strictly after t: (time, True if it is a start)."""
        day = math.floor(t / DAY_S) * DAY_S
        for offset in (0.0, DAY_S, 2 * DAY_S):
            for sec, is_start in self.edges():
                if day + offset + sec > t:
                    return (day + offset + sec, is_start)
        return (math.inf, False)  # an all-day shift never changes


@dataclass(frozen=True)
class Absence:
    """`reviewers` of shift `shift`'s people away in [start_s, end_s) (seconds since the epoch).

    Planned work elsewhere (a maintenance window, training): the team knows it in advance, so
    the capacity the policies plan with drops too. A reviewer who has a case in hand when the
    absence starts finishes it; that time counts neither as on-shift time nor as work.
    """

    start_s: float
    end_s: float
    reviewers: int = 1
    shift: int = 0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.start_s) and math.isfinite(self.end_s)):
            raise ValueError("an absence needs finite start and end times")
        if not self.end_s > self.start_s:
            raise ValueError(f"an absence must end after it starts ({self.start_s}, {self.end_s})")
        if not isinstance(self.reviewers, int) or self.reviewers < 1:
            raise ValueError(f"absence reviewers must be an integer >= 1, got {self.reviewers!r}")


def _default_shifts() -> tuple[Shift, ...]:
    return (Shift(8, 20, 2), Shift(20, 8, 1))


@dataclass(frozen=True)
class TeamConfig:
    """The review team: shifts, how long a case takes, how often fraud is recognised, the SLA.

    Defaults: 24/7 coverage with two reviewers on the day shift (08-20 UTC, the European
    daytime peak) and one at night; a case takes a median 4 minutes (lognormal, sigma 0.5: the
    95th percentile is about 9 minutes, the mean 4.5), reviewers decline every fraud a review
    can reveal (not friendly fraud: see the module docstring), and a reviewed payment should be
    released within 15 minutes.
    """

    shifts: tuple[Shift, ...] = field(default_factory=_default_shifts)
    handling_median_min: float = 4.0
    handling_sigma: float = 0.5
    accuracy: float = 1.0  # share of reviewed, stoppable fraud the reviewer correctly declines
    sla_min: float = 15.0
    seed: int = 0
    absences: tuple[Absence, ...] = ()

    def __post_init__(self) -> None:
        if not self.shifts or sum(s.reviewers for s in self.shifts) == 0:
            raise ValueError("the team needs at least one reviewer on some shift")
        for a in self.absences:
            if not 0 <= a.shift < len(self.shifts):
                raise ValueError(f"absence shift {a.shift} is not one of the team's shifts")
            if a.reviewers > self.shifts[a.shift].reviewers:
                raise ValueError(
                    f"absence takes {a.reviewers} reviewers from a shift of "
                    f"{self.shifts[a.shift].reviewers}"
                )
        if not self.handling_median_min > 0:
            raise ValueError(f"handling_median_min must be > 0, got {self.handling_median_min}")
        if not 0 <= self.handling_sigma <= 3:
            raise ValueError(f"handling_sigma must be in [0, 3], got {self.handling_sigma}")
        if not 0 <= self.accuracy <= 1:
            raise ValueError(f"accuracy must be in [0, 1], got {self.accuracy}")
        if not self.sla_min > 0:
            raise ValueError(f"sla_min must be > 0, got {self.sla_min}")

    @property
    def mean_handling_min(self) -> float:
        return self.handling_median_min * math.exp(self.handling_sigma**2 / 2)

    @property
    def reviewer_shifts(self) -> list[Shift]:
        """One entry per reviewer (reviewer i works shift reviewer_shifts[i])."""
        return [s for s in self.shifts for _ in range(s.reviewers)]

    @property
    def reviewer_shift_index(self) -> list[int]:
        """Reviewer i works team.shifts[reviewer_shift_index[i]]."""
        return [k for k, s in enumerate(self.shifts) for _ in range(s.reviewers)]

    def absence_windows(self, reviewer: int) -> list[tuple[float, float]]:
        """The [start, end) windows in which reviewer i (see reviewer_shifts) is away.

        An absence of k reviewers from a shift takes that shift's last k reviewers."""
        k = self.reviewer_shift_index[reviewer]
        first = self.reviewer_shift_index.index(k)
        rank_from_end = self.shifts[k].reviewers - (reviewer - first)  # 1 = the shift's last
        return [
            (a.start_s, a.end_s)
            for a in self.absences
            if a.shift == k and a.reviewers >= rank_from_end
        ]

    def on_shift(self, t: np.ndarray | float) -> np.ndarray:
        """Reviewers on shift (and not away) at time(s) t."""
        t = np.asarray(t, dtype=np.float64)
        out = np.zeros(t.shape, dtype=np.int64)
        for s in self.shifts:
            out += s.covers(t).astype(np.int64) * s.reviewers
        for r, sh in enumerate(self.reviewer_shifts):
            for a, b in self.absence_windows(r):
                out -= (sh.covers(t) & (t >= a) & (t < b)).astype(np.int64)
        return out

    def on_shift_seconds(self, start: float, end: float) -> float:
        """Reviewer-seconds on shift (absences taken out) within [start, end)."""
        if end <= start:
            return 0.0
        total = float(
            sum(
                s.reviewers * float(s.on_seconds_until(end) - s.on_seconds_until(start))
                for s in self.shifts
            )
        )
        for r, sh in enumerate(self.reviewer_shifts):
            for a, b in self.absence_windows(r):
                lo, hi = max(a, start), min(b, end)
                if hi > lo:
                    total -= float(sh.on_seconds_until(hi) - sh.on_seconds_until(lo))
        return total

    def capacity_per_hour(self, t: np.ndarray | float, utilisation: float = 0.8) -> np.ndarray:
        """Cases the reviewers on shift clear per hour at `utilisation` of their time."""
        return self.on_shift(t) * (60.0 / self.mean_handling_min) * utilisation

    def sla_rate_per_hour(self, reviewers: int, quantile: float = 0.95) -> float:
        """The most cases an hour `reviewers` can take and still release `quantile` of them
        within the SLA, by the M/M/c queue (Erlang C): P(wait > SLA - mean handling) <= 1 -
        quantile. Planning with it, not with a fixed utilisation, is what keeps the hold within
        the SLA when few reviewers are on shift (one reviewer at 80% waits ~4 handling times)."""
        if reviewers <= 0:
            return 0.0
        mu = 60.0 / self.mean_handling_min  # cases an hour per reviewer
        t = max(self.sla_min - self.mean_handling_min, 0.0) / 60.0  # hours a case may wait

        def p_late(lam: float) -> float:
            a = lam / mu
            if a >= reviewers:
                return 1.0
            term, total = 1.0, 1.0
            for k in range(1, reviewers):
                term *= a / k
                total += term
            top = term * a / reviewers * reviewers / (reviewers - a)
            erlang_c = top / (total + top)
            return erlang_c * math.exp(-(reviewers * mu - lam) * t)

        lo, hi = 0.0, reviewers * mu
        for _ in range(60):  # bisection: p_late grows with the arrival rate
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if p_late(mid) <= 1 - quantile else (lo, mid)
        return lo

    def sla_capacity_per_hour(
        self, t: np.ndarray | float, utilisation: float = 0.8, quantile: float = 0.95
    ) -> np.ndarray:
        """Cases an hour the reviewers on shift at t can take: the lower of `capacity_per_hour`
        and `sla_rate_per_hour` (what keeps `quantile` of the holds within the SLA)."""
        on = np.asarray(self.on_shift(t))
        sla = np.vectorize(lambda c: self.sla_rate_per_hour(int(c), quantile))(on)
        return np.minimum(self.capacity_per_hour(t, utilisation), sla.astype(np.float64))

    def describe(self) -> str:
        shifts = ", ".join(
            f"{s.reviewers} x {s.start_hour:02g}:00-{s.end_hour:02g}:00 UTC" for s in self.shifts
        )
        away = "".join(
            f"; {a.reviewers} of shift {a.shift} away "
            f"{pd.Timestamp(a.start_s, unit='s', tz='UTC'):%Y-%m-%d %H:%M}-"
            f"{pd.Timestamp(a.end_s, unit='s', tz='UTC'):%H:%M} UTC"
            for a in self.absences
        )
        return (
            f"{shifts}; handling lognormal median {self.handling_median_min:g} min, sigma "
            f"{self.handling_sigma:g} (mean {self.mean_handling_min:.2f} min); accuracy "
            f"{self.accuracy:.0%}; SLA {self.sla_min:g} min; seed {self.seed}{away}"
        )


# === the queue ================================================================================
@dataclass(frozen=True)
class QueueResult:
    """Per case (index and order of the arrivals): arrival `time`, `start`, `end`, `wait`,
    `hold` (arrival to release, seconds), `handling`, `reviewer`, `declined` (stoppable fraud
    recognised and declined; fraud a review cannot stop is approved).
    `series`: the state after every change, `time`, `queue_depth` (waiting, not in hand),
    `busy`, `on_shift`. Utilisation is on-shift work over on-shift time within `period`."""

    cases: pd.DataFrame
    series: pd.DataFrame
    period: tuple[float, float]
    busy_seconds: float
    shift_seconds: float

    @property
    def utilisation(self) -> float:
        return self.busy_seconds / self.shift_seconds if self.shift_seconds > 0 else float("nan")

    def utilisation_between(self, team: TeamConfig, start: float, end: float) -> float:
        """Reviewer utilisation within [start, end) (e.g. one surge day)."""
        shift_s = team.on_shift_seconds(start, end)
        if shift_s <= 0:
            return float("nan")
        return _busy_on_shift(self.cases, team, start, end) / shift_s


def to_seconds(values: pd.Series | np.ndarray | Sequence[Any]) -> np.ndarray:
    """Seconds since the epoch from datetimes (any resolution; naive = UTC) or numbers."""
    s = pd.Series(values) if not isinstance(values, pd.Series) else values
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        ts = pd.to_datetime(s, utc=True)
        epoch = pd.Timestamp(0, tz="UTC")
        return ((ts - epoch) / pd.Timedelta(seconds=1)).to_numpy(dtype=np.float64)
    return s.to_numpy(dtype=np.float64)


def draw_handling(team: TeamConfig, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(handling seconds, uniform draw for the reviewer's verdict) for n cases, from team.seed."""
    rng = np.random.default_rng(team.seed)
    handling = rng.lognormal(math.log(team.handling_median_min * MIN_S), team.handling_sigma, n)
    return handling, rng.random(n)


def stoppable_mask(frame: pd.DataFrame) -> np.ndarray:
    """The frame's `stoppable` column as booleans (missing column or NA: True, stoppable)."""
    if STOPPABLE not in frame:
        return np.ones(len(frame), dtype=bool)
    return frame[STOPPABLE].astype("boolean").fillna(True).to_numpy(dtype=bool)


def _busy_on_shift(cases: pd.DataFrame, team: TeamConfig, start: float, end: float) -> float:
    """Seconds of case work that fall inside the reviewer's own shift and inside [start, end)."""
    if cases.empty:
        return 0.0
    shifts = team.reviewer_shifts
    a = np.clip(cases["start"].to_numpy(dtype=np.float64), start, end)
    b = np.clip(cases["end"].to_numpy(dtype=np.float64), start, end)
    rev = cases["reviewer"].to_numpy(dtype=np.int64)
    total = 0.0
    for r in np.unique(rev):
        if r < 0:
            continue
        m = rev == r
        sh = shifts[int(r)]
        total += float((sh.on_seconds_until(b[m]) - sh.on_seconds_until(a[m])).sum())
        for lo, hi in team.absence_windows(int(r)):  # finishing a case while away: not on shift
            a2, b2 = np.clip(a[m], lo, hi), np.clip(b[m], lo, hi)
            total -= float((sh.on_seconds_until(b2) - sh.on_seconds_until(a2)).sum())
    return total


def simulate_queue(
    arrivals: pd.DataFrame,
    team: TeamConfig,
    priority_order: bool,
    *,
    handling_minutes: np.ndarray | None = None,
    period: tuple[float, float] | None = None,
) -> QueueResult:
    """Run the review queue on `arrivals` (columns `time`; `priority`, `is_fraud`, `stoppable`
    optional).

    The reviewer declines a case when it is fraud, a review can stop it (`stoppable`, True when
    the column is missing or the value is NA) and the case's verdict draw is below
    `team.accuracy`; everything else is approved.

    `priority_order`: reviewers take the waiting case with the highest `priority` (ties: the
    oldest); otherwise the oldest. `handling_minutes` replaces the lognormal draws (one per
    case, in the arrivals' order), e.g. for exact tests. `period` bounds the utilisation; by
    default the whole days from the first arrival to the last release.
    """
    n = len(arrivals)
    times = to_seconds(arrivals["time"]) if n else np.zeros(0)
    if n and not np.isfinite(times).all():
        raise ValueError("arrival times must be finite")
    prio = (
        arrivals["priority"].to_numpy(dtype=np.float64)
        if "priority" in arrivals
        else np.zeros(n, dtype=np.float64)
    )
    fraud = (
        arrivals["is_fraud"].to_numpy(dtype=np.float64, na_value=0.0) == 1
        if "is_fraud" in arrivals
        else np.zeros(n, dtype=bool)
    )
    stoppable = stoppable_mask(arrivals)
    handling, verdict_u = draw_handling(team, n)
    if handling_minutes is not None:
        handling = np.asarray(handling_minutes, dtype=np.float64) * MIN_S
        if handling.shape != (n,) or (handling < 0).any():
            raise ValueError("handling_minutes needs one non-negative value per arrival")
    declined = fraud & stoppable & (verdict_u < team.accuracy)

    start = np.full(n, np.nan)
    end = np.full(n, np.nan)
    who = np.full(n, -1, dtype=np.int64)
    shifts = team.reviewer_shifts
    owner = team.reviewer_shift_index
    # the case each reviewer has in hand (-1: none); on-shift flags change at shift changes
    busy_case = [-1] * len(shifts)
    series_t: list[float] = []
    series_q: list[int] = []
    series_b: list[int] = []
    series_o: list[int] = []

    order = np.lexsort((np.arange(n), times))  # by time, then position
    events: list[tuple[float, int, int, int]] = []  # (time, kind, seq, payload)
    # kinds at equal times: a release frees a reviewer, then shifts change, then cases arrive
    release, shift_change, arrive = 0, 1, 2
    seq = 0
    for i in order:
        events.append((float(times[i]), arrive, seq, int(i)))
        seq += 1
    t0 = float(times[order[0]]) if n else 0.0
    for k, sh in enumerate(team.shifts):
        if sh.reviewers:
            when, _ = sh.next_change(t0)
            if math.isfinite(when):
                events.append((when, shift_change, seq, k))
                seq += 1
    away_windows = [team.absence_windows(r) for r in range(len(shifts))]
    for lo, hi in {w for ws in away_windows for w in ws}:
        for when in (lo, hi):
            if when > t0:
                events.append((when, shift_change, seq, -1))  # -1: someone leaves or returns
                seq += 1
    heapq.heapify(events)

    def away_at(r: int, at: float) -> bool:
        return any(lo <= at < hi for lo, hi in away_windows[r])

    on_shift = [bool(sh.covers(t0)) for sh in shifts]
    away = [away_at(r, t0) for r in range(len(shifts))]
    queue: list[tuple[float, float, int]] = []  # (key1, key2, case)
    pending = n
    busy = 0

    while pending or queue or busy:
        if not events:  # cannot happen with >= 1 reviewer on some shift; guards the loop
            raise RuntimeError("review queue stalled: no reviewer will ever be on shift")
        t = events[0][0]
        while events and events[0][0] == t:
            _, kind, _, payload = heapq.heappop(events)
            if kind == release:
                busy_case[payload] = -1
                busy -= 1
            elif kind == arrive:
                i = payload
                key = (-prio[i], times[i]) if priority_order else (times[i], 0.0)
                heapq.heappush(queue, (key[0], key[1], i))
                pending -= 1
            elif payload < 0:  # an absence starts or ends
                away = [away_at(r, t) for r in range(len(shifts))]
            else:  # a shift starts or ends: everyone's on-shift flag at t
                sh = team.shifts[payload]
                for r, k in enumerate(owner):
                    if k == payload:
                        on_shift[r] = bool(sh.covers(t))
                when, _ = sh.next_change(t)
                if math.isfinite(when):
                    heapq.heappush(events, (when, shift_change, seq, payload))
                    seq += 1
        for r in range(len(shifts)):
            if not queue:
                break
            if on_shift[r] and not away[r] and busy_case[r] < 0:
                _, _, i = heapq.heappop(queue)
                start[i], end[i], who[i] = t, t + handling[i], r
                busy_case[r] = i
                busy += 1
                heapq.heappush(events, (float(end[i]), release, seq, r))
                seq += 1
        series_t.append(t)
        series_q.append(len(queue))
        series_b.append(busy)
        series_o.append(sum(o and not w for o, w in zip(on_shift, away, strict=True)))

    cases = pd.DataFrame(
        {
            "time": times,
            "start": start,
            "end": end,
            "wait": start - times,
            "hold": end - times,
            "handling": handling,
            "reviewer": who,
            "declined": declined,
        },
        index=arrivals.index,
    )
    series = pd.DataFrame(
        {"time": series_t, "queue_depth": series_q, "busy": series_b, "on_shift": series_o}
    )
    if period is None:
        lo = math.floor(t0 / DAY_S) * DAY_S if n else 0.0
        hi = float(np.nanmax(end)) if n else DAY_S
        period = (lo, math.ceil(hi / DAY_S) * DAY_S)
    busy_s = _busy_on_shift(cases, team, *period)
    shift_s = team.on_shift_seconds(*period)
    return QueueResult(cases, series, period, busy_s, shift_s)


def binned_depth(series: pd.DataFrame, start: float, end: float, step: float) -> pd.DataFrame:
    """Largest queue depth and busy count within each [bin, bin + step) of [start, end)."""
    edges = np.arange(start, end, step, dtype=np.float64)
    t = series["time"].to_numpy(dtype=np.float64)
    out = {"time": edges}
    for col in ("queue_depth", "busy"):
        v = series[col].to_numpy(dtype=np.float64)
        # value carried into each bin (the state after the last change before it), then the max
        idx = np.searchsorted(t, edges, side="right") - 1
        peak = np.zeros(len(edges), dtype=np.float64)
        if len(v):
            peak = np.where(idx >= 0, v[np.clip(idx, 0, None)], 0.0)
        inside = (t >= start) & (t < end)
        b = ((t[inside] - start) // step).astype(np.int64)
        np.maximum.at(peak, b, v[inside])
        out[col] = peak
    return pd.DataFrame(out)


# === policies =================================================================================
def capacity_aware_decisions(
    times_s: np.ndarray,
    p: np.ndarray,
    review: float,
    decline: float,
    config: CapacityConfig,
    capacity_at: Callable[[float], float] | None = None,
    progress: Callable[[int], None] | None = None,
    score: np.ndarray | None = None,
    expected_loss: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Replay payments (in time order) through a CapacityGovernor, as the service does.

    `score` is the model's review score per payment (the probability by default, or a review's
    expected saving); `review` is a threshold on it, `decline` on the probability.
    `expected_loss` (probability x amount) is what a payment let through by the raised band
    spends of `config.max_shed_loss_per_day`; without it, p.

    `capacity_at(t)` gives the staffed reviews per hour at time t (the shift on duty); without
    it, `config.reviews_per_hour` throughout. Returns (decisions, adjusted?, review threshold).
    """
    n = len(p)
    order = np.lexsort((np.arange(n), times_s))
    governor = CapacityGovernor(config)
    decisions = np.empty(n, dtype=object)
    adjusted = np.zeros(n, dtype=bool)
    used = np.empty(n, dtype=np.float64)
    current = config.reviews_per_hour
    for j, i in enumerate(order):
        t, pi = float(times_s[i]), float(p[i])
        si = pi if score is None else float(score[i])
        if capacity_at is not None:
            cap = float(capacity_at(t))
            if cap != current:
                current = cap
                governor.config = replace(config, reviews_per_hour=max(cap, 1e-9))
        band = governor.band(t, review, decline)
        governor.observe(t, si)
        adjusted[i], used[i] = band.adjusted, band.review
        decisions[i] = (
            "decline" if pi >= band.decline else "review" if si >= band.review else "approve"
        )
        if band.adjusted and decisions[i] == "approve" and si >= review:
            governor.shed(t, pi if expected_loss is None else float(expected_loss[i]))
        if progress is not None and (j + 1) % 5_000 == 0:
            progress(j + 1)
    if progress is not None:
        progress(n)
    return decisions.astype(str), adjusted, used


# === figures ==================================================================================
def _pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) / MIN_S if len(values) else float("nan")


def replay(
    decisions: np.ndarray | Sequence[str],
    frame: pd.DataFrame,
    team: TeamConfig,
    *,
    priority_order: bool,
    period: tuple[float, float] | None = None,
    surge: np.ndarray | None = None,
) -> tuple[dict[str, float], QueueResult]:
    """Every figure for one policy on one period, and the queue it produced.

    `frame`: one row per payment of the period with `time`, `is_fraud`, `amount`, for
    priority order `priority`, and optionally `stoppable` (False for fraud no review stops, e.g.
    friendly fraud; all fraud is stoppable without it). `surge` flags the payments on surge days
    (for the surge figures). `period` defaults to the whole days the payments span.

    Fraud counts as caught only when it is stopped: declined at scoring (no reviewer needed),
    or reviewed and declined by the reviewer. Reviewed fraud a review cannot stop is approved
    and counts as loss.
    """
    d = np.asarray(decisions).astype(str)
    if len(d) != len(frame):
        raise ValueError(f"{len(d)} decisions for {len(frame)} payments")
    bad = sorted(set(np.unique(d)) - set(ACTIONS))
    if bad:
        raise ValueError(f"unknown decision(s) {bad} (use {', '.join(ACTIONS)})")
    if "is_fraud" not in frame or frame["is_fraud"].isna().any():
        raise ValueError("every payment needs an is_fraud label to be evaluated")
    times = to_seconds(frame["time"])
    fraud = frame["is_fraud"].to_numpy(dtype=np.float64) == 1
    amount = frame["amount"].to_numpy(dtype=np.float64)
    stoppable = stoppable_mask(frame)
    surge_mask = np.zeros(len(frame), dtype=bool) if surge is None else np.asarray(surge, bool)
    if period is None:
        lo = math.floor(times.min() / DAY_S) * DAY_S if len(times) else 0.0
        hi = math.ceil((times.max() + 1) / DAY_S) * DAY_S if len(times) else DAY_S
        period = (lo, hi)

    reviewed = d == "review"
    declined = d == "decline"
    approved = d == "approve"
    arrivals = pd.DataFrame(
        {
            "time": times[reviewed],
            "priority": (
                frame["priority"].to_numpy(dtype=np.float64)[reviewed]
                if "priority" in frame
                else np.zeros(int(reviewed.sum()))
            ),
            "is_fraud": fraud[reviewed],
            STOPPABLE: stoppable[reviewed],
        }
    )
    queue = simulate_queue(arrivals, team, priority_order, period=period)
    c = queue.cases
    caught = declined & fraud
    caught[np.flatnonzero(reviewed)] |= c["declined"].to_numpy(dtype=bool)
    good = ~fraud
    rev_good = good[reviewed]
    hold = c["hold"].to_numpy(dtype=np.float64)
    wait = c["wait"].to_numpy(dtype=np.float64)
    hold_good = hold[rev_good]
    hold_good_surge = hold[rev_good & surge_mask[reviewed]]
    sla = team.sla_min * MIN_S
    days = (period[1] - period[0]) / DAY_S
    series = queue.series
    peak_idx = int(series["queue_depth"].to_numpy().argmax()) if len(series) else -1

    surge_util = float("nan")
    surge_days: np.ndarray = np.unique(np.floor(times[surge_mask] / DAY_S))
    if len(surge_days):
        busy = sum(_busy_on_shift(c, team, s * DAY_S, (s + 1) * DAY_S) for s in surge_days)
        on = sum(team.on_shift_seconds(s * DAY_S, (s + 1) * DAY_S) for s in surge_days)
        surge_util = busy / on if on > 0 else float("nan")
    per_hour = (
        pd.Series(np.floor(times[reviewed] / HOUR_S)).value_counts().max() if reviewed.any() else 0
    )
    n_good = int(good.sum())
    fraud_amount = float(amount[fraud].sum())
    not_stoppable = fraud & ~stoppable
    reviewed_fraud = reviewed & fraud
    figures: dict[str, float] = {
        "payments": float(len(frame)),
        "good_payments": float(n_good),
        "fraud_payments": float(fraud.sum()),
        "fraud_amount_total": fraud_amount,
        "fraud_not_stoppable_payments": float(not_stoppable.sum()),
        "fraud_not_stoppable_amount": float(amount[not_stoppable].sum()),
        "days": days,
        "approved": float(approved.sum()),
        "declined": float(declined.sum()),
        "review_volume": float(reviewed.sum()),
        "review_share": float(reviewed.mean()) if len(d) else 0.0,
        "reviews_per_day": float(reviewed.sum()) / days,
        "reviews_on_surge_days": float((reviewed & surge_mask).sum()),
        "peak_reviews_per_hour": float(per_hour),
        "good_settled_instantly": float((approved & good).sum()),
        "good_settled_instantly_share": float((approved & good).sum()) / max(n_good, 1),
        "good_reviewed": float((reviewed & good).sum()),
        "good_declined": float((declined & good).sum()),
        "fraud_reviewed": float(reviewed_fraud.sum()),
        "fraud_reviewed_amount": float(amount[reviewed_fraud].sum()),
        # reviewed fraud a review cannot stop (friendly fraud): held, then approved
        "fraud_reviewed_not_stoppable": float((reviewed_fraud & ~stoppable).sum()),
        "fraud_reviewed_not_stoppable_amount": float(amount[reviewed_fraud & ~stoppable].sum()),
        "fraud_caught_count": float(caught.sum()),
        "fraud_caught_amount": float(amount[caught].sum()),
        "fraud_caught_amount_share": float(amount[caught].sum()) / fraud_amount
        if fraud_amount
        else 0.0,
        "fraud_loss": float(amount[fraud & ~caught].sum()),
        "hold_p50_min": _pct(hold_good, 50),
        "hold_p95_min": _pct(hold_good, 95),
        "hold_p99_min": _pct(hold_good, 99),
        "hold_max_min": float(hold_good.max()) / MIN_S if len(hold_good) else float("nan"),
        "hold_p95_surge_min": _pct(hold_good_surge, 95),
        "wait_p95_min": _pct(wait, 95),
        "peak_queue_depth": float(series["queue_depth"].max()) if len(series) else 0.0,
        "peak_queue_time": float(series["time"].iloc[peak_idx]) if peak_idx >= 0 else float("nan"),
        "sla_breaches": float((hold > sla).sum()),
        "sla_breach_share": float((hold > sla).mean()) if len(hold) else 0.0,
        "sla_breaches_on_surge_days": float((hold > sla)[surge_mask[reviewed]].sum()),
        "reviewer_utilisation": queue.utilisation,
        "reviewer_utilisation_surge_days": surge_util,
    }
    return figures, queue


def evaluate_policy(
    decisions: np.ndarray | Sequence[str],
    frame: pd.DataFrame,
    team: TeamConfig,
    *,
    priority_order: bool = False,
    period: tuple[float, float] | None = None,
    surge: np.ndarray | None = None,
) -> dict[str, float]:
    """Every figure for one policy (see `replay`)."""
    return replay(
        decisions, frame, team, priority_order=priority_order, period=period, surge=surge
    )[0]


def reviews_to_match(
    score: np.ndarray,
    fraud: np.ndarray,
    amount: np.ndarray,
    target: float,
    stoppable: np.ndarray | None = None,
) -> int:
    """Payments to review, taken by descending score, until their fraud amount reaches target.

    With `stoppable`, only fraud a review can stop counts towards the target (a reviewed
    friendly-fraud payment is approved, so it adds nothing). len(score) + 1 if even reviewing
    everything does not reach it.
    """
    if target <= 0:
        return 0
    counts = np.asarray(fraud, bool)
    if stoppable is not None:
        counts = counts & np.asarray(stoppable, bool)
    order = np.argsort(-np.asarray(score, dtype=np.float64), kind="stable")
    gained = np.cumsum(np.where(counts, amount, 0.0)[order])
    k = int(np.searchsorted(gained, target - 1e-9 * max(target, 1.0), side="left")) + 1
    return k if k <= len(order) else len(order) + 1
