"""Prometheus metrics for operators. Created on first use (nothing at import time)."""

from __future__ import annotations

import threading
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

    class _M:
        decisions = prom.Counter(
            name="riskgate_decisions_total",
            documentation="Scoring decisions by decision and source",
            labelnames=["decision", "source"],
        )
        fallbacks = prom.Counter(
            name="riskgate_fallbacks_total",
            documentation="Payments decided by the fallback rules, by cause",
            labelnames=["cause"],
        )
        latency = prom.Histogram(
            name="riskgate_score_seconds",
            documentation="Time to score one payment in-process (features, model, policy, write)",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )
        stage = prom.Histogram(
            name="riskgate_stage_seconds",
            documentation="Time per scoring stage",
            labelnames=["stage"],
            buckets=(0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.25),
        )
        group_size = prom.Histogram(
            name="riskgate_score_group_size",
            documentation="/score requests scored together in one group (one commit) under load",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
        )
        replays = prom.Counter(
            name="riskgate_replays_total",
            documentation="Requests answered from a stored decision (idempotency key or same id)",
        )
        capacity_adjusted = prom.Counter(
            name="riskgate_capacity_adjusted_total",
            documentation="Payments decided with a review band raised to fit review capacity",
        )
        review_threshold = prom.Gauge(
            name="riskgate_review_threshold",
            documentation="Review threshold in force (raised above the model's during a surge)",
            multiprocess_mode="mostrecent",
        )
        score_psi = prom.Gauge(
            name="riskgate_score_psi",
            documentation="PSI of the recent scores against the training profile (>0.25: shift)",
            multiprocess_mode="mostrecent",
        )
        review_decisions = prom.Counter(
            name="riskgate_review_decisions_total",
            documentation="Review decisions by reviewer and decision",
            labelnames=["reviewer", "decision"],
        )
        time_to_decision = prom.Histogram(
            name="riskgate_time_to_decision_seconds",
            documentation="From scoring (case created) to the reviewer's decision",
            buckets=(30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 86400),
        )
        sla_breaches = prom.Counter(
            name="riskgate_sla_breaches_total",
            documentation="Cases decided after their SLA due time",
        )
        queue_depth = prom.Gauge(
            name="riskgate_queue_depth",
            documentation="Open review cases",
            multiprocess_mode="mostrecent",
        )
        queue_oldest = prom.Gauge(
            name="riskgate_queue_oldest_age_seconds",
            documentation="Age of the oldest open case",
            multiprocess_mode="mostrecent",
        )
        queue_overdue = prom.Gauge(
            name="riskgate_queue_overdue",
            documentation="Open cases already past their SLA due time",
            multiprocess_mode="mostrecent",
        )
        reloads = prom.Counter(
            name="riskgate_model_reloads_total",
            documentation="Model reloads by outcome",
            labelnames=["outcome"],
        )

    return _M
