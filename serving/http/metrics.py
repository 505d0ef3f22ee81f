"""Prometheus over HTTP: the /metrics exposition and the per-route request metrics.

BentoML's own HTTP metrics label every request with its raw path (`scope["path"]`), also for
requests refused with 401: each polled id, a card number sent in a path, any string a scanner
tries became a series, in memory and in the multi-process files on disk, and /metrics grew
without bound. riskgate turns them off (`metrics={"enabled": False}` on the service) and counts
requests itself, by route template (`/payments/{transaction_id}`), method and status, all from
bounded sets; a path no route serves is counted as `unmatched`.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from starlette.routing import compile_path

from serving.core.metrics import HTTP_METHODS, label_of, m

UNMATCHED = "unmatched"
# served by BentoML itself (not in the FastAPI app): matched exactly
BENTOML_ROUTES = ("/score", "/score_batch", "/healthz", "/livez", "/readyz", "/docs.json", "/")
PREFIXES = ("/console",)  # mounted apps counted as one route each

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
def metrics() -> Response:
    """Every worker's metrics (multi-process mode under `bentoml serve`), else this process's.
    No key needed: every label is from a bounded set (see serving.core.metrics)."""
    import prometheus_client as prom

    registry: Any = prom.REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = prom.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    return Response(prom.generate_latest(registry), media_type=prom.CONTENT_TYPE_LATEST)


Table = list[tuple[re.Pattern[str], str]]


def route_paths(routes: Sequence[Any], prefix: str = "") -> Iterator[str]:
    """The path templates of an app's routes, in routing order. FastAPI keeps an included
    router as one branch holding the router (and its prefix): walked into."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            context = getattr(route, "include_context", None)
            yield from route_paths(inner.routes, prefix + str(getattr(context, "prefix", "")))
        elif isinstance(path := getattr(route, "path", None), str) and hasattr(route, "endpoint"):
            yield prefix + path


def route_table(routes: Sequence[Any]) -> Table:
    """(regex, template) for every route of the app, in routing order (first match wins, as in
    Starlette), then BentoML's own routes and the mounted prefixes."""
    table: Table = [(compile_path(path)[0], path) for path in route_paths(routes)]
    table += [(re.compile(re.escape(p) + "$"), p) for p in BENTOML_ROUTES]
    table += [(re.compile(re.escape(p) + "(/.*)?$"), p) for p in PREFIXES]
    return table


def template_of(path: str, table: Table) -> str:
    """The route template serving `path`, or UNMATCHED: never the path itself."""
    for regex, template in table:
        if regex.match(path):
            return template
    return UNMATCHED


class RouteMetrics:
    """ASGI middleware: riskgate_http_requests_total and riskgate_http_request_seconds by
    route template, counted when the response starts (a refused request counts too)."""

    def __init__(self, app: Any, routes: Callable[[], Sequence[Any]]) -> None:
        self.app = app
        self._routes = routes
        self._table: Table | None = None  # built on the first request (routers are included)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") == "/metrics":
            await self.app(scope, receive, send)
            return
        if self._table is None:
            self._table = route_table(self._routes())
        route = template_of(scope.get("path", ""), self._table)
        method = label_of(scope.get("method", ""), HTTP_METHODS, "OTHER")
        started = time.perf_counter()
        status = 500  # if the app fails before answering

        async def counted(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, counted)
        finally:
            metrics = m()
            metrics.http_requests.labels(method=method, route=route, status=str(status)).inc()
            metrics.http_seconds.labels(method=method, route=route).observe(
                time.perf_counter() - started
            )
