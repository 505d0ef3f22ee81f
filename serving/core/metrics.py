"""Prometheus metrics for operators. Created on first use (nothing at import time)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

_LOCK = threading.Lock()
_METRICS: Any = None


def m() -> Any:
    """The metric objects, created once (thread-safe: the queue watcher and the first request
    may ask at the same moment, and a metric registered twice is an error)."""
    global _METRICS
    if _METRICS is None:
        with _LOCK:
            if _METRICS is None:
                _METRICS = _create()
    return _METRICS


def _create() -> Any:
    """The metric objects. Plain prometheus_client: under `bentoml serve` it runs in multi-process
    mode (BentoML sets PROMETHEUS_MULTIPROC_DIR) and /metrics aggregates every worker."""
    import prometheus_client as prom

    def counter(name: str, doc: str, *labels: str) -> Any:
        return prom.Counter(name=name, documentation=doc, labelnames=labels)

    def histogram(name: str, doc: str, buckets: Sequence[float], *labels: str) -> Any:
        return prom.Histogram(name=name, documentation=doc, labelnames=labels, buckets=buckets)

    def gauge(name: str, doc: str) -> Any:
        """A level: across workers /metrics shows the most recent value written."""
        return prom.Gauge(name=name, documentation=doc, multiprocess_mode="mostrecent")

    class _M:
        decisions = counter(
            "riskgate_decisions_total",
            "Scoring decisions by decision and source",
            "decision",
            "source",
        )
        fallbacks = counter(
            "riskgate_fallbacks_total", "Payments decided by the fallback rules, by cause", "cause"
        )
        latency = histogram(
            "riskgate_score_seconds",
            "Time to score one payment in-process (features, model, policy, write)",
            (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )
        stage = histogram(
            "riskgate_stage_seconds",
            "Time per scoring stage",
            (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.25),
            "stage",
        )
        group_size = histogram(
            "riskgate_score_group_size",
            "/score requests scored together in one group (one commit) under load",
            (1, 2, 4, 8, 16, 32, 64, 128),
        )
        replays = counter(
            "riskgate_replays_total",
            "Requests answered from a stored decision (idempotency key or same id)",
        )
        capacity_adjusted = counter(
            "riskgate_capacity_adjusted_total",
            "Payments decided with a review band raised to fit review capacity",
        )
        review_threshold = gauge(
            "riskgate_review_threshold",
            "Review threshold in force (raised above the model's during a surge)",
        )
        score_psi = gauge(
            "riskgate_score_psi",
            "PSI of the recent scores against the training profile (>0.25: shift)",
        )
        review_decisions = counter(
            "riskgate_review_decisions_total",
            "Review decisions by reviewer and decision",
            "reviewer",
            "decision",
        )
        time_to_decision = histogram(
            "riskgate_time_to_decision_seconds",
            "From scoring (case created) to the reviewer's decision",
            (30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 86400),
        )
        sla_breaches = counter(
            "riskgate_sla_breaches_total", "Cases decided after their SLA due time"
        )
        queue_depth = gauge("riskgate_queue_depth", "Open review cases")
        queue_oldest = gauge("riskgate_queue_oldest_age_seconds", "Age of the oldest open case")
        queue_overdue = gauge(
            "riskgate_queue_overdue", "Open cases already past their SLA due time"
        )
        reloads = counter("riskgate_model_reloads_total", "Model reloads by outcome", "outcome")

    return _M
