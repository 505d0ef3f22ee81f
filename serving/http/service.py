"""The BentoML service: builds the real dependencies at start-up and delegates; no logic here.

`/score` and `/score_batch` are typed BentoML APIs (pydantic in, pydantic out, in the OpenAPI at
/docs.json); the review, payment-status, label and admin routes are a FastAPI app mounted into
the same server; /healthz and /readyz come from BentoML, /metrics from riskgate
(serving/http/metrics.py).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from typing import Any

import anyio
import bentoml
import orjson
from pydantic import TypeAdapter
from sqlalchemy.exc import OperationalError
from starlette.responses import JSONResponse

from data import pan
from serving.core.auth import AuthError, KeyRing, Principal, require
from serving.core.schemas import BatchIn, BatchOut, PaymentIn, ScoreOut
from serving.http.api import create_app
from serving.http.bodylimit import limited
from serving.http.drain import DrainGate, on_sigterm
from serving.http.metrics import RouteMetrics
from serving.http.openapi import OpenAPIPatch
from serving.scoring.groups import ClosedError

http_app = create_app()
_PAYMENTS = TypeAdapter(list[PaymentIn])


_ORJSON = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


class _FastJSON(JSONResponse):
    """starlette's JSONResponse encoded by orjson (the same JSON, ~10x faster to encode)."""

    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(content, option=_ORJSON)
        except TypeError:  # what orjson refuses (an int past 64 bits): the standard library's
            return super().render(content)


def _reply(ctx: bentoml.Context, body: dict[str, Any], status: int) -> JSONResponse:
    """BentoML copies ctx.response.status_code onto the response: set it there."""
    ctx.response.status_code = status
    return _FastJSON(body, status_code=status)


_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_LOGGED_FIELDS = 20


def _loc_text(loc: Any) -> str:
    """A field path for the log: indices and field-like names only (an unknown key is the
    caller's text and may be anything, a card number included)."""
    parts = [
        str(p) if isinstance(p, int) or _FIELD_NAME.match(str(p)) else "?" for p in (loc or ())
    ]
    return ".".join(parts) or "body"


class RefusedBodyLog(logging.Filter):
    """BentoML logs a refused /score or /score_batch body as an ERROR with the validation
    error's traceback. A refusal is the caller's mistake, not the service's: this rewrites it
    into one WARNING line naming the fields, without the traceback and without any value."""

    def filter(self, record: logging.LogRecord) -> bool:
        from bentoml.exceptions import BentoMLException
        from pydantic import ValidationError

        exc = record.exc_info[1] if record.exc_info else None
        args = record.args if isinstance(record.args, tuple) else ()
        path = str(args[0]) if args else "?"
        if isinstance(exc, ValidationError):
            errors = exc.errors(include_url=False, include_context=False, include_input=False)
            names = sorted({_loc_text(e.get("loc")) for e in errors})
            more = len(names) - MAX_LOGGED_FIELDS
            fields = ", ".join(names[:MAX_LOGGED_FIELDS]) + (f" (+{more} more)" if more > 0 else "")
            record.msg, record.args = "refused request body on %s: invalid %s", (path, fields)
        elif isinstance(exc, BentoMLException) and 400 <= exc.error_code.value < 500:
            record.msg = "refused request on %s: %s (%d)"
            record.args = (path, type(exc).__name__, exc.error_code.value)
        else:
            return True
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info, record.exc_text = None, None
        return True


def install_refusal_log() -> None:
    """On the logger BentoML's `log_exception` uses (idempotent)."""
    target = logging.getLogger("bentoml._internal.server.http_app")
    if not any(isinstance(f, RefusedBodyLog) for f in target.filters):
        target.addFilter(RefusedBodyLog())


install_refusal_log()
log = logging.getLogger("riskgate")

SCORING_PATHS = frozenset({"/score", "/score_batch"})
PUBLIC_PREFIXES = ("/console", "/static_content/")  # the console's and Swagger's static files
PUBLIC_PATHS = frozenset(
    {"/healthz", "/livez", "/readyz", "/metrics", "/docs.json", "/api/openapi.json", "/"}
)


def _is_json(content_type: str | None) -> bool:
    """No Content-Type (BentoML reads JSON), application/json or application/*+json."""
    if content_type is None:
        return True
    kind = content_type.partition(";")[0].strip().lower()
    return kind == "application/json" or (
        kind.startswith("application/") and kind.endswith("+json")
    )


class KeyCheck:
    """ASGI middleware: every non-public route needs a valid key (401) before its body is read,
    so an anonymous caller learns nothing about the schema and its body is never parsed or
    logged; /score and /score_batch also need the backend role here (403). Other role checks
    stay with the routes."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            await self.app(scope, receive, send)
            return
        runtime = getattr(http_app.state, "runtime", None)
        if runtime is None:
            await JSONResponse({"error": "service is starting"}, status_code=503)(
                scope, receive, send
            )
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            who = runtime.keys.authenticate(headers.get("authorization"))
            if path in SCORING_PATHS:
                require(who, ("backend",))
        except AuthError as exc:
            await JSONResponse({"error": exc.message}, status_code=exc.status)(scope, receive, send)
            return
        if path in SCORING_PATHS and not _is_json(headers.get("content-type")):
            # BentoML would also parse a form (multipart or urlencoded) into the payment: the
            # contract is JSON, whose parser refuses NaN and Infinity for /score
            error = {
                "error": "Content-Type must be application/json",
                "detail": [{"loc": ["header", "Content-Type"]}],
            }
            await JSONResponse(error, status_code=415)(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = who
        await limited(scope, receive, send, runtime.settings.max_body_bytes, self.app)


_KEY_HOLDS_CARD = {
    "error": "Idempotency-Key looks like it holds a card number (refused: it would be stored)",
    "detail": [{"loc": ["header", "Idempotency-Key"]}],
}


def _holds_card_number(header: str) -> bool:
    """The header as Starlette decoded it (latin-1) and as the client most likely wrote it
    (UTF-8: a no-break space or full-width digits arrive as several latin-1 characters)."""
    if pan.contains(header):
        return True
    try:
        return pan.contains(header.encode("latin-1").decode("utf-8"))
    except UnicodeError:
        return False


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent() -> None:
    """In a worker: be killed (SIGKILL) when the `riskgate serve` process dies, however it
    dies. BentoML's process manager starts each worker in a session of its own, so a
    `kill -9` of the server's process group would leave the workers serving and holding the
    port. Linux only (elsewhere a no-op); the server PID comes from `riskgate serve`."""
    server = os.environ.get("RISKGATE_SERVER_PID")
    if not server or int(server) == os.getpid() or not sys.platform.startswith("linux"):
        return  # not under `riskgate serve`, or the server process itself
    import ctypes
    import signal

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_PDEATHSIG) failed: workers may outlive a killed server")
        return
    if os.getppid() != int(server):  # the server died before the call: nobody to serve for
        os.kill(os.getpid(), signal.SIGKILL)


def _db_unavailable(ctx: bentoml.Context) -> JSONResponse:
    """The transaction rolled back: nothing stored; the backend retries with the same key."""
    ctx.response.status_code = 503
    body = {"error": "database unavailable, nothing was stored: retry with the same key"}
    return JSONResponse(body, status_code=503, headers={"Retry-After": "2"})


def _trace_scoring() -> bool:
    return os.environ.get("RISKGATE_TRACE_SCORING", "false").strip().lower() in ("1", "true", "yes")


def _bento_model_tag() -> str | None:
    """Served from a built Bento (`bentoml serve riskgate:TAG`): the riskgate model it packs."""
    from serving.http.bento import BENTO_MODEL

    bento = getattr(Riskgate, "bento", None)
    if bento is None:
        return None
    tags = [str(m.tag) for m in bento.info.all_models if m.tag.name == BENTO_MODEL]
    return tags[0] if tags else None


def _console_app() -> Any:
    from serving.review.console import create_console

    return create_console()


@bentoml.service(
    name="riskgate",
    logging={"access": {"enabled": False}},
    # BentoML's HTTP metrics label each request with its raw path (any id or string a caller
    # sends, 401s included): off; riskgate counts by route template (serving/http/metrics.py)
    # and serves /metrics itself
    metrics={"enabled": False},
    traffic={"timeout": 30, "max_concurrency": 512},
    # BentoML wraps every request in OpenTelemetry spans even with no exporter configured:
    # ~0.35 ms of CPU per /score, a third of the request. The hot path is left out unless an
    # operator wants it traced (RISKGATE_TRACE_SCORING=true, with BentoML's tracing exporter).
    tracing={"excluded_urls": "" if _trace_scoring() else "/score"},  # also /score_batch
    workers=int(os.environ.get("RISKGATE_WORKERS", "1")),  # set by `riskgate serve --workers`
)
@bentoml.asgi_app(http_app, path="/")  # mounted last: the catch-all after /console
@bentoml.asgi_app(_console_app(), path="/console")
class Riskgate:
    """Scores payments for the backend; serves reviewers and operators."""

    @bentoml.on_deployment
    def _preflight() -> None:
        """In the server process, before any worker: a bad configuration exits 2 at once."""
        from serving.http.startup import preflight

        preflight()

    def __init__(self) -> None:
        from serving.http.startup import check_settings, worker_failed

        die_with_parent()
        on_sigterm()  # drain: in-flight requests finish, new ones get 503 + Retry-After
        install_refusal_log()  # again, in case the worker's logging set-up replaced it
        try:
            check_settings()
            self._start()
        except Exception as exc:
            worker_failed(exc)  # under a server: one line, the server exits 3, no respawn
            raise

    def _start(self) -> None:
        from serving.core.settings import Settings
        from serving.http.runtime import build
        from serving.http.startup import StartupError

        settings = Settings()
        keys = KeyRing.parse(settings.api_keys or "")  # checked by check_settings
        packed = _bento_model_tag()
        if packed is not None and not settings.model_dir and not settings.bento_model:
            settings = settings.model_copy(update={"bento_model": packed})
        try:
            self.rt = build(settings, keys)
        except OperationalError as exc:  # sqlalchemy's: the decision store
            text = f"RISKGATE_DB_URL: the database cannot be opened ({exc.orig})"
            raise StartupError(text) from None
        http_app.state.runtime = self.rt

    def __is_ready__(self) -> bool:
        return bool(self.rt.ready())

    @bentoml.on_shutdown
    def _close(self) -> None:
        self.rt.close()

    def _auth(self, ctx: bentoml.Context) -> Principal | JSONResponse:
        who = getattr(ctx.request.state, "principal", None)  # set by KeyCheck
        if isinstance(who, Principal):
            return who
        try:
            who = self.rt.keys.authenticate(ctx.request.headers.get("authorization"))
            require(who, ("backend",))
        except AuthError as exc:
            return _reply(ctx, {"error": exc.message}, exc.status)
        return who

    @bentoml.api(route="/score", input_spec=PaymentIn, output_spec=ScoreOut)
    async def score(self, ctx: bentoml.Context, **payment: Any) -> Any:
        """Score one payment: approve (settle now), review (hold, case created) or decline."""
        who = self._auth(ctx)
        if isinstance(who, JSONResponse):
            return who
        key = ctx.request.headers.get("idempotency-key")
        if key is not None and not 1 <= len(key) <= 200:
            return _reply(ctx, {"error": "Idempotency-Key must be 1-200 characters"}, 400)
        if key is not None and _holds_card_number(key):
            return _reply(ctx, _KEY_HOLDS_CARD, 400)
        item = PaymentIn.model_construct(**payment)
        try:
            if self.rt.groups is not None:  # group commit: concurrent requests score together
                status, body = await self.rt.groups.score(item, who, key)
            else:  # inline on the event loop (the model call has its deadline)
                status, body = self.rt.scorer.score(item, who, key)
        except OperationalError:
            return _db_unavailable(ctx)
        except ClosedError:
            return _reply(ctx, {"error": "the service is stopping: retry with the same key"}, 503)
        return _reply(ctx, body, status)

    @bentoml.api(route="/score_batch", input_spec=BatchIn, output_spec=BatchOut)
    async def score_batch(self, ctx: bentoml.Context, **body: Any) -> Any:
        """Score up to 1,000 payments in one call, in the order given."""
        who = self._auth(ctx)
        if isinstance(who, JSONResponse):
            return who
        # BentoML validated the body (BatchIn): these are PaymentIn already, checked in one call
        payments = _PAYMENTS.validate_python(body["payments"])
        limit = self.rt.settings.max_batch
        if not 1 <= len(payments) <= limit:
            error = {
                "error": f"payments: send 1 to {limit} payments",
                "detail": [{"loc": ["payments"]}],
            }
            return _reply(ctx, error, 400)
        seen: set[str] = set()
        for i, p in enumerate(payments):
            if p.transaction_id in seen:
                loc = ["payments", i, "transaction_id"]
                error = {"error": f"payments[{i}].transaction_id repeats", "detail": [{"loc": loc}]}
                return _reply(ctx, error, 400)
            seen.add(p.transaction_id)
        key = ctx.request.headers.get("idempotency-key")
        if key is not None and not 1 <= len(key) <= 190:
            return _reply(ctx, {"error": "Idempotency-Key must be 1-190 characters"}, 400)
        if key is not None and _holds_card_number(key):
            return _reply(ctx, _KEY_HOLDS_CARD, 400)
        started = time.perf_counter()
        try:  # a batch is long: off the event loop, so health checks keep answering
            status, out = await anyio.to_thread.run_sync(
                self.rt.scorer.score_many, payments, who, key
            )
        except OperationalError:
            return _db_unavailable(ctx)
        if status != 200:
            assert isinstance(out, dict)
            return _reply(ctx, out, status)
        results = out
        elapsed = round((time.perf_counter() - started) * 1000, 3)
        return _reply(ctx, {"results": results, "elapsed_ms": elapsed}, 200)


# @bentoml.service returned a bentoml Service (typed here as the class it wraps); the first
# added is the outermost: requests refused by KeyCheck are counted too
Riskgate.add_asgi_middleware(RouteMetrics, routes=lambda: http_app.routes)  # type: ignore[attr-defined]
Riskgate.add_asgi_middleware(KeyCheck)  # type: ignore[attr-defined]
Riskgate.add_asgi_middleware(OpenAPIPatch)  # type: ignore[attr-defined]
Riskgate.add_asgi_middleware(DrainGate)  # type: ignore[attr-defined]
