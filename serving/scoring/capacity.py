"""Capacity-aware review band: during a surge, keep expected review inflow within staffed capacity.

The model's review threshold assumes normal volume. When payments arrive faster, the same
threshold sends more cases than the team can clear, and every good payment in the queue waits.
The governor raises the review threshold just enough that the expected inflow (estimated from
the recent score distribution and arrival rate) fits the capacity, never above a configured
ceiling (the most risk it may let through), and never touches the decline threshold: the
riskiest payments are still declined or reviewed. Pure logic with an injected clock; used by
the service and by the review-delay simulator.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CapacityConfig:
    enabled: bool = False
    reviews_per_hour: float = 30.0  # what the staffed team clears per hour
    window_s: float = 3_600.0  # how much recent traffic the estimate looks at
    # Ceiling on the raised threshold, in the model's review-score unit (a probability, or a
    # review's expected saving in money): never let through payments above it.
    max_review_threshold: float = 0.2
    min_payments: int = 200  # below this many recent payments, do not adapt
    # The most expected fraud loss (probability x amount of the payments the raised band lets
    # through instead of reviewing) per UTC day; once spent, the model's own threshold applies
    # again until midnight. None: no budget (only the ceiling bounds the risk).
    max_shed_loss_per_day: float | None = None


@dataclass(frozen=True)
class Band:
    review: float
    decline: float
    adjusted: bool
    expected_per_hour: float


class CapacityGovernor:
    """Tracks recent (time, review score) and answers the review threshold to use now."""

    def __init__(self, config: CapacityConfig, max_points: int = 200_000) -> None:
        self.config = config
        self._t: deque[float] = deque(maxlen=max_points)
        self._p: deque[float] = deque(maxlen=max_points)
        self._day = -1
        self.shed_loss_today = 0.0

    def _spent(self, t: float) -> float:
        day = int(t // 86_400)
        if day != self._day:
            self._day, self.shed_loss_today = day, 0.0
        return self.shed_loss_today

    def shed(self, t: float, expected_loss: float) -> None:
        """Record a payment the raised band let through that the model's threshold would have
        sent to review: its expected loss is spent from today's budget."""
        self._spent(t)
        self.shed_loss_today += max(float(expected_loss), 0.0)

    def observe(self, t: float, score: float) -> None:
        """`score` is the model's review score: the probability, or a review's expected saving."""
        self._t.append(t)
        self._p.append(score)
        horizon = t - self.config.window_s
        while self._t and self._t[0] < horizon:
            self._t.popleft()
            self._p.popleft()

    def band(self, t: float, review: float, decline: float, ceiling: float | None = None) -> Band:
        """The thresholds for a payment arriving at time t (seconds); `ceiling` overrides the
        configured maximum (the service passes the one matching the model's review score)."""
        c = self.config
        top = c.max_review_threshold if ceiling is None else ceiling
        n = len(self._p)
        if not c.enabled or n < c.min_payments:
            return Band(review, decline, False, float("nan"))
        budget = c.max_shed_loss_per_day
        if budget is not None and self._spent(t) >= budget:
            return Band(review, decline, False, float("nan"))
        span = max(t - self._t[0], 1.0)
        rate = n / span * 3_600.0  # payments per hour
        p = np.fromiter(self._p, dtype=np.float64, count=n)
        expected = float((p >= review).mean()) * rate
        if expected <= c.reviews_per_hour:
            return Band(review, decline, False, expected)
        # the threshold whose share of recent payments at or above it matches capacity
        share = c.reviews_per_hour / rate
        adjusted = float(np.quantile(p, 1.0 - share, method="higher"))
        # decline is untouched: the riskiest payments are declined before the review band applies
        adjusted = min(max(adjusted, review), max(top, review))
        if adjusted <= review:
            return Band(review, decline, False, expected)
        return Band(adjusted, decline, True, float((p >= adjusted).mean()) * rate)
