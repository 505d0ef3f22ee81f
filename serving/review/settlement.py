"""When will a held payment settle? Its place in the queue against the staffed capacity. Pure.

The queue order is the reviewers' (serving.review.queue): overdue first, then money at risk
(priority), then age, then id. A case at position k settles when the team has finished k cases
(the k - 1 ahead of it and its own). The team's work is counted in "cases finished": reviewers
on shift (team.py's shifts, changed by the calendar's staffing and maintenance windows) each
finish 1 / mean handling time cases per minute. The k-th finish in that count is a sum of k
handling times: a gamma with the handling time's coefficient of variation (a renewal
approximation), mapped back to the clock through the staffed-capacity curve, so a night shift
or a maintenance window with nobody reviewing pushes the time out. New cases with more money at
risk may still overtake a held one: the times are for the queue as it stands.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from scipy.stats import gamma

from serving.review.team import Shift, TeamConfig

STEP_MIN = 1.0  # resolution of the capacity curve
HORIZON_MIN = 7 * 24 * 60.0  # beyond a week the answer is "unknown" (None)
QUANTILES = (0.5, 0.9)


@dataclass(frozen=True)
class OpenCase:
    """What the queue order needs of an open case."""

    case_id: int
    priority: float
    created_at: datetime
    sla_due: datetime


def queue_order(cases: Sequence[OpenCase], now: datetime) -> list[int]:
    """Case ids in the reviewers' order (the same as queue.list_cases)."""
    ranked = sorted(
        cases,
        key=lambda c: (0 if c.sla_due < now else 1, -c.priority, c.created_at, c.case_id),
    )
    return [c.case_id for c in ranked]


def positions(cases: Sequence[OpenCase], now: datetime) -> dict[int, int]:
    """Case id -> 1-based place in the queue."""
    return {cid: i + 1 for i, cid in enumerate(queue_order(cases, now))}


# reviewers on shift at epoch seconds t (array in, array out)
Staffing = Callable[[np.ndarray], np.ndarray]


def team_staffing(team: TeamConfig) -> Staffing:
    """The team's shifts, unchanged."""
    return lambda t: team.on_shift(t).astype(np.float64)


@dataclass(frozen=True)
class CapacityCurve:
    """Cumulative cases the staffed team finishes from `start`, minute by minute."""

    start: datetime
    minutes: np.ndarray  # 0, STEP, 2 STEP, ...
    finished: np.ndarray  # cumulative cases finished by then

    @classmethod
    def build(
        cls,
        start: datetime,
        staffing: Staffing,
        mean_handling_min: float,
        horizon_min: float = HORIZON_MIN,
    ) -> CapacityCurve:
        minutes = np.arange(0.0, horizon_min + STEP_MIN, STEP_MIN)
        t0 = start.timestamp()
        on = staffing(t0 + minutes[:-1] * 60.0 + 30.0)  # each step's middle
        per_step = np.clip(on, 0, None) * STEP_MIN / mean_handling_min
        return cls(start, minutes, np.concatenate([[0.0], np.cumsum(per_step)]))

    def minutes_until(self, work: float) -> float | None:
        """Clock minutes from `start` until `work` cases are finished; None beyond the horizon."""
        if work <= 0:
            return 0.0
        if work > self.finished[-1]:
            return None
        return float(np.interp(work, self.finished, self.minutes))


def handling_cv2(team: TeamConfig) -> float:
    """Squared coefficient of variation of the lognormal handling time."""
    return math.expm1(team.handling_sigma**2)


def finish_quantiles(
    k: int, curve: CapacityCurve, cv2: float, quantiles: Sequence[float] = QUANTILES
) -> list[float | None]:
    """Minutes from the curve's start until the k-th case is finished, per quantile."""
    if k < 1:
        return [0.0 for _ in quantiles]
    cv2 = max(cv2, 1e-6)
    shape, scale = k / cv2, cv2  # mean k finished cases, variance k cv2
    return [curve.minutes_until(float(gamma.ppf(q, shape, scale=scale))) for q in quantiles]


@dataclass(frozen=True)
class Settlement:
    position: int
    p50: datetime | None
    p90: datetime | None
    p50_minutes: float | None
    p90_minutes: float | None


def expected_settlement(position: int, curve: CapacityCurve, cv2: float) -> Settlement:
    """p50 / p90 settlement time of the case at `position` (1-based) in the queue."""
    p50, p90 = finish_quantiles(position, curve, cv2)

    def at(m: float | None) -> datetime | None:
        return None if m is None else curve.start + timedelta(minutes=m)

    return Settlement(position, at(p50), at(p90), p50, p90)


def parse_shifts(spec: str) -> tuple[Shift, ...]:
    """`"08-20:2,20-08:1"` (start-end hours UTC : reviewers) -> shifts; errors name the entry."""
    out: list[Shift] = []
    for n, item in enumerate((s.strip() for s in spec.split(",")), start=1):
        if not item:
            continue
        hours, _, people = item.partition(":")
        start, _, end = hours.partition("-")
        try:
            out.append(Shift(float(start), float(end), int(people)))
        except ValueError as exc:
            raise ValueError(
                f"shift entry {n} ({item!r}): use START-END:REVIEWERS ({exc})"
            ) from None
    if not out:
        raise ValueError("no shift given (e.g. 08-20:2,20-08:1)")
    return tuple(out)


def team_of(shifts: str, handling_median_min: float, sla_min: float) -> TeamConfig:
    """The staffed team from the service's settings."""
    return TeamConfig(
        shifts=parse_shifts(shifts), handling_median_min=handling_median_min, sla_min=sla_min
    )
