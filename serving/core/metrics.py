"""Prometheus metrics for operators. Created once at start-up (nothing at import time).

Every label takes its values from a fixed set declared here (`LABEL_SETS`), and every series of
those sets is created at 0 when the metrics are: a rate() or an alert works from the first
scrape, before the first fallback or reload. Nothing a caller sends (a path, an id, a name)
becomes a label value; HTTP requests are counted by route template (serving/http/metrics.py).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence
from typing import Any

_LOCK = threading.Lock()
_METRICS: Any = None

DECISIONS = ("approve", "review", "decline")
SOURCES = ("model", "rules", "fallback")
# why the fallback decided: the model missed its deadline, every model slot was still busy with
# late calls, it raised, it answered NaN, there is no model (the last is a coding slip)
FALLBACK_CAUSES = ("deadline", "busy", "error", "nan", "no_model", "unknown")
STAGES = ("features", "model", "explain")
REVIEW_DECISIONS = ("approve", "decline", "decline_fraud")
REVIEW_ROLES = ("reviewer", "supervisor")  # who decided, by role: a name is personal data
RELOAD_OUTCOMES = ("ok", "refused")
SCORING_ROUTES = ("/score", "/score_batch")
LOCK_BUCKETS = (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)  # seconds
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

# metric attribute -> {label: allowed values}; every combination is created at 0
LABEL_SETS: dict[str, dict[str, tuple[str, ...]]] = {
    "decisions": {"decision": DECISIONS, "source": SOURCES},
    "fallbacks": {"cause": FALLBACK_CAUSES},
    "stage": {"stage": STAGES},
    "review_decisions": {"role": REVIEW_ROLES, "decision": REVIEW_DECISIONS},
    "reloads": {"outcome": RELOAD_OUTCOMES},
}


def m() -> Any:
    """The metric objects, created once (thread-safe: the queue watcher and the first request
    may ask at the same moment, and a metric registered twice is an error)."""
    global _METRICS
    if _METRICS is None:
        with _LOCK:
            if _METRICS is None:
                _METRICS = create()
    return _METRICS


def create(registry: Any = None) -> Any:
    """The metric objects, every bounded series at 0. Plain prometheus_client: under
    `bentoml serve` it runs in multi-process mode (BentoML sets PROMETHEUS_MULTIPROC_DIR) and
    /metrics aggregates every worker. `registry`: the default one unless a test gives its own."""
    import prometheus_client as prom

    where = {} if registry is None else {"registry": registry}

    def counter(name: str, doc: str, *labels: str) -> Any:
        return prom.Counter(name=name, documentation=doc, labelnames=labels, **where)

    def histogram(name: str, doc: str, buckets: Sequence[float], *labels: str) -> Any:
        return prom.Histogram(
            name=name, documentation=doc, labelnames=labels, buckets=buckets, **where
        )

    def gauge(name: str, doc: str) -> Any:
        """A level: across workers /metrics shows the most recent value written."""
        return prom.Gauge(name=name, documentation=doc, multiprocess_mode="mostrecent", **where)

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
        # The order lock (this process's threads and, through the state log, every worker):
        # its held seconds summed over a run, over the run's wall time, is how busy the one
        # serial section is; near 1 a second worker cannot add throughput (README, Performance)
        order_wait = histogram(
            "riskgate_order_lock_wait_seconds",
            "Time a scoring call or group waited for the order lock",
            LOCK_BUCKETS,
        )
        order_held = histogram(
            "riskgate_order_lock_held_seconds",
            "Time a scoring call or group held the order lock (catch-up, score, durable write)",
            LOCK_BUCKETS,
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
        online_compiled = gauge(
            "riskgate_online_features_compiled",
            "1 when the online features walk their windows in C (features/_windows.c built "
            "for this Python), 0 when they run the same walk in Python (about 2x slower)",
        )
        score_psi = gauge(
            "riskgate_score_psi",
            "PSI of the recent scores against the training profile (>0.25: shift)",
        )
        review_decisions = counter(
            "riskgate_review_decisions_total",
            "Review decisions by the decider's role and decision",
            "role",
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
        http_requests = counter(
            "riskgate_http_requests_total",
            "HTTP requests by method, route template (never the raw path) and status",
            "method",
            "route",
            "status",
        )
        http_seconds = histogram(
            "riskgate_http_request_seconds",
            "HTTP request duration by method and route template",
            (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
            "method",
            "route",
        )

    for attr, labels in LABEL_SETS.items():
        metric = getattr(_M, attr)
        for values in itertools.product(*labels.values()):
            metric.labels(**dict(zip(labels, values, strict=True)))
    # the hot path's labelled children, looked up once (labels() takes a lock and builds a
    # key on every call: a few us per payment on the scoring path)
    _M.stage_of = {stage: _M.stage.labels(stage=stage) for stage in STAGES}  # type: ignore[attr-defined]
    _M.decision_of = {  # type: ignore[attr-defined]
        (d, s): _M.decisions.labels(decision=d, source=s) for d in DECISIONS for s in SOURCES
    }
    for route in SCORING_ROUTES:  # the backend's request rate and latency from the first scrape
        _M.http_requests.labels(method="POST", route=route, status="200")
        _M.http_seconds.labels(method="POST", route=route)
    return _M


def label_of(value: str, allowed: Sequence[str], other: str = "other") -> str:
    """`value` when it is one of `allowed`, else `other`: a label never takes a new value."""
    return value if value in allowed else other
