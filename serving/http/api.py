"""The JSON API besides scoring: review cases, payment status, labels, admin. FastAPI, mounted
into the BentoML service (so one server, one port). Handlers are thin: they check the caller's
role, call serving.review.queue / the runtime, and map errors to status codes."""

from __future__ import annotations

import csv
import functools
import inspect
import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from data import pan
from serving.core.auth import AuthError, Principal, Role, require
from serving.core.schemas import (
    MAX_NOTE,
    NonFiniteNumberError,
    finite_json,
    now_utc,
    rfc3339,
    utc_in_range,
    with_rfc3339,
)
from serving.http.metrics import router as metrics_router
from serving.review import operations, queue
from serving.review.appeals import QUEUE as APPEALS
from serving.review.routing import QueueSpec
from serving.scoring.policy import MAX_FALLBACK_AMOUNT
from serving.store import db

MAX_BULK = 200
BIG = 2**63 - 1  # database integers are 64-bit: larger ids are refused, not crashed on
CaseId = Annotated[int, Path(ge=1, le=BIG)]


class ErrorBody(BaseModel):
    error: Any


def _r(*codes: int) -> dict[int | str, dict[str, Any]]:
    """Declared error responses (OpenAPI), all with the service's {"error": ...} body."""
    return {code: {"model": ErrorBody} for code in codes}


def runtime(request: Request) -> Any:
    rt = getattr(request.app.state, "runtime", None)
    if rt is None:
        raise HTTPException(503, "service is starting")
    return rt


def role(*allowed: Role) -> Callable[..., Principal]:
    """Dependency: authenticate the Bearer key and check its role (401 / 403)."""

    def dep(request: Request, authorization: str | None = Header(default=None)) -> Principal:
        rt = runtime(request)
        try:
            # the service's KeyCheck middleware has already authenticated the key: reuse it
            who = getattr(request.state, "principal", None)
            if not isinstance(who, Principal):
                who = rt.keys.authenticate(authorization)
            require(who, allowed)
        except AuthError as exc:
            raise HTTPException(exc.status, exc.message) from None
        return who

    return dep


def _case_error(exc: queue.CaseError) -> HTTPException:
    return HTTPException(exc.status, exc.message)


def _masked(v: str | None) -> str | None:
    """Free text keeps its words; a card number in it is replaced by pan.MASK."""
    return None if v is None else pan.mask(v)


def _no_card_number(v: str) -> str:
    if pan.contains(v):
        raise ValueError("looks like a raw card number (refused: send the transaction id)")
    return v


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: Literal["approve", "decline", "decline_fraud"]
    note: str | None = Field(default=None, max_length=MAX_NOTE)
    # the stored version is incremented on decision: it stays below the 64-bit limit
    version: int | None = Field(default=None, ge=0, le=BIG - 1, description="optimistic check")

    _note = field_validator("note")(_masked)


class BulkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    case_ids: list[Annotated[int, Field(ge=1, le=BIG)]] = Field(min_length=1, max_length=MAX_BULK)
    note: str | None = Field(default=None, max_length=MAX_NOTE)

    _note = field_validator("note")(_masked)


class LabelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    transaction_id: str = Field(min_length=1, max_length=128)
    label_time: datetime | None = None
    is_fraud: bool = True
    reason: str | None = Field(default=None, max_length=MAX_NOTE)

    _reason = field_validator("reason")(_masked)
    _transaction_id = field_validator("transaction_id")(_no_card_number)

    @field_validator("label_time")
    @classmethod
    def _in_range(cls, v: datetime | None) -> datetime | None:
        return utc_in_range(v)


LABEL_FUTURE = timedelta(days=1)  # clock skew a backend's label_time may have, at most


class PolicyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    allow: dict[str, list[str]] = {}
    block: dict[str, list[str]] = {}
    rules: list[dict[str, Any]] = []
    fallback_max_amount: float = Field(
        default=50.0, ge=0, le=MAX_FALLBACK_AMOUNT, allow_inf_nan=False
    )


class _StrictJSONRequest(Request):
    """A request whose JSON body may not hold NaN, Infinity or 1e309 (400 naming the field):
    Python's parser accepts them, pydantic's `ge=`/`le=` bounds let infinity through, and
    neither a database column nor a JSON response can hold them."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            try:
                self._json = finite_json(await self.body())
            except NonFiniteNumberError as exc:
                raise HTTPException(400, str(exc)) from None
        return self._json


def _times_as_rfc3339(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """The endpoint's return value with every datetime written by `rfc3339` (FastAPI would
    write a stored SQLite time without its offset). Same signature, so FastAPI sees the same
    parameters; async stays async."""
    if inspect.iscoroutinefunction(endpoint):

        @functools.wraps(endpoint)
        async def wrapped_async(*args: Any, **kwargs: Any) -> Any:
            return with_rfc3339(await endpoint(*args, **kwargs))

        return wrapped_async

    @functools.wraps(endpoint)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        return with_rfc3339(endpoint(*args, **kwargs))

    return wrapped


class StrictJSONRoute(APIRoute):
    """JSON bodies without NaN or Infinity, responses with RFC 3339 times."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, _times_as_rfc3339(endpoint), **kwargs)

    def get_route_handler(self) -> Callable[[Request], Any]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Any:
            return await handler(_StrictJSONRequest(request.scope, request.receive))

        return strict


router = APIRouter(responses=_r(401, 403, 503), route_class=StrictJSONRoute)

# a supervisor may do everything a reviewer may; a merchant key reaches only its own routes
Reviewer = Depends(role("reviewer", "supervisor"))
Backend = Depends(role("backend"))
Admin = Depends(role("admin"))
ReviewerOrAdmin = Depends(role("reviewer", "supervisor", "admin"))
BackendOrAdmin = Depends(role("backend", "admin"))
AnyRole = Depends(role("backend", "reviewer", "supervisor", "admin", "merchant"))


@router.get("/whoami", tags=["auth"])
def whoami(who: Principal = AnyRole) -> dict[str, str]:
    """The caller's role and name (the console's sign-in check)."""
    return {"role": who.role, "name": who.name, "key_id": who.key_id}


@router.get("/cases", tags=["review"])
def list_cases(
    request: Request,
    who: Principal = ReviewerOrAdmin,
    status: Literal["open", "decided", "all"] = "open",
    min_amount: float | None = Query(default=None, ge=0),
    max_amount: float | None = Query(default=None, ge=0),
    min_score: int | None = Query(default=None, ge=0, le=99),
    max_score: int | None = Query(default=None, ge=0, le=99),
    merchant_id: str | None = Query(default=None, max_length=128),
    overdue: bool | None = None,
    queue_name: str | None = Query(default=None, alias="queue", max_length=64),
    limit: int = Query(default=50, ge=1, le=500),
    offset: int = Query(default=0, ge=0, le=BIG),
) -> dict[str, Any]:
    """Cases in queue order: overdue first, then money at risk (probability x amount), then age."""
    rt = runtime(request)
    now = now_utc()
    _route(rt, now)
    f = queue.CaseFilter(
        status=None if status == "all" else status,
        min_amount=min_amount,
        max_amount=max_amount,
        min_score=min_score,
        max_score=max_score,
        merchant_id=merchant_id,
        overdue=overdue,
        queue=queue_name,
        limit=limit,
        offset=offset,
    )
    items, total = queue.list_cases(rt.engine, f, now)
    return {
        "items": items,
        "total": total,
        "limit": limit,
        "offset": offset,
        "stats": queue.queue_stats(rt.engine, now),
    }


@router.get("/cases/{case_id}", tags=["review"], responses=_r(404))
def get_case(case_id: CaseId, request: Request, who: Principal = ReviewerOrAdmin) -> dict[str, Any]:
    rt = runtime(request)
    now = now_utc()
    try:
        _route(rt, now)  # a case opened before any list was fetched has its queue (and arm)
        return queue.get_case(rt.engine, case_id, now)
    except queue.CaseError as exc:
        raise _case_error(exc) from None


# Registered before /cases/{case_id}/claim, which would otherwise match "next" as a case id.
@router.post("/cases/next/claim", tags=["review"], responses=_r(404, 409))
def claim_next_case(request: Request, who: Principal = Reviewer) -> dict[str, Any]:
    """Claim the first free open case in queue order (overdue, money at risk, age) for the
    caller; concurrent reviewers never get the same case; 404 when no case is free."""
    rt = runtime(request)
    now = now_utc()
    try:
        _route(rt, now)
        return queue.claim_next(
            rt.engine, who, now, rt.settings.claim_minutes, where=_next_where(who)
        )
    except queue.CaseError as exc:
        raise _case_error(exc) from None
    except OperationalError:
        raise HTTPException(
            503, "the database is unavailable: try again", headers={"Retry-After": "5"}
        ) from None


@router.post("/cases/{case_id}/claim", tags=["review"], responses=_r(404, 409))
def claim_case(case_id: CaseId, request: Request, who: Principal = Reviewer) -> dict[str, Any]:
    rt = runtime(request)
    try:
        _route(rt, now_utc())
        guard = operations.claim_guard(rt.engine, _queues(rt), case_id, who)
        return queue.claim(rt.engine, case_id, who, now_utc(), rt.settings.claim_minutes, guard)
    except queue.CaseError as exc:
        raise _case_error(exc) from None


@router.post("/cases/{case_id}/release", tags=["review"], responses=_r(404, 409))
def release_case(case_id: CaseId, request: Request, who: Principal = Reviewer) -> dict[str, Any]:
    try:
        queue.release(runtime(request).engine, case_id, who, now_utc())
    except queue.CaseError as exc:
        raise _case_error(exc) from None
    return {"case_id": case_id, "released": True}


def _apply_review_label(
    rt: Any, result: dict[str, Any], now: datetime, who: Principal | None = None
) -> None:
    from serving.core.metrics import REVIEW_ROLES, label_of, m

    if who is not None:
        role = label_of(who.role, REVIEW_ROLES)  # by role: a reviewer's name is personal data
        m().review_decisions.labels(role=role, decision=result["decision"]).inc()
    m().time_to_decision.observe(result["waited_seconds"])
    if result["past_sla"]:
        m().sla_breaches.inc()
    if result.get("label_is_fraud") is not None:  # a review's or an appeal's label
        rt.holder.current.online.apply_label(
            result["transaction_id"], result["label_is_fraud"], now
        )
    rt.wake_webhooks()


@router.post("/cases/{case_id}/decision", tags=["review"], responses=_r(400, 404, 409))
def decide_case(
    case_id: CaseId, body: DecisionIn, request: Request, who: Principal = Reviewer
) -> dict[str, Any]:
    """One decision per case: a second or concurrent one gets 409 and changes nothing."""
    rt = runtime(request)
    now = now_utc()
    try:
        result = _decide(rt, case_id, body.decision, body.note, who, now, body.version)
    except queue.CaseError as exc:
        raise _case_error(exc) from None
    return result


def _queues(rt: Any) -> Any:
    """The stored queues, and the appeals queue always (filled only by POST .../appeal)."""
    config = operations.load_config(rt.engine, rt.settings.sla_minutes)
    if config.get(APPEALS) is None:
        config = config.with_queue(QueueSpec(APPEALS, rt.settings.appeals_sla_minutes))
    return config


def explain_arms(rt: Any) -> tuple[str, ...]:
    """RISKGATE_EXPLAIN_ARMS (validated in Settings); empty: no experiment."""
    raw = rt.settings.explain_arms
    return tuple(a.strip() for a in raw.split(",") if a.strip()) if raw else ()


def _route(rt: Any, now: datetime) -> None:
    """File new cases into their queues (and arms of the explanation experiment)."""
    operations.route_pending(rt.engine, _queues(rt), now, explain_arms(rt))


def _next_where(who: Principal) -> Any:
    """What "the next case" may be for this caller: not on hold, not its own proposal awaiting
    a second pair of eyes, and for a reviewer not an escalated case."""
    from sqlalchemy import and_, or_

    c = db.cases.c
    cond = and_(
        c.hold_since.is_(None), or_(c.pending_key_id.is_(None), c.pending_key_id != who.key_id)
    )
    if who.role != "supervisor":
        cond = and_(cond, or_(c.queue.is_(None), c.queue != "supervisors"))
    return cond


def _decide(
    rt: Any,
    case_id: int,
    decision: Any,
    note: str | None,
    who: Principal,
    now: datetime,
    version: int | None = None,
) -> dict[str, Any]:
    """A review decision through the queue's rules (allowed decisions, locked queue,
    escalation) and four eyes above RISKGATE_FOUR_EYES_AMOUNT; labels applied when settled."""
    config = _queues(rt)
    operations.route_pending(rt.engine, config, now, explain_arms(rt))
    guard = operations.decision_guard(rt.engine, config, case_id, decision, who)
    result = queue.decide(
        rt.engine,
        case_id,
        decision,
        note,
        who,
        now,
        version,
        guard=guard,
        four_eyes_above=rt.settings.four_eyes_amount,
    )
    if not result.get("pending_confirmation"):
        _apply_review_label(rt, result, now, who)
    return result


@router.post("/cases/bulk_approve", tags=["review"], responses=_r(400))
def bulk_approve(body: BulkIn, request: Request, who: Principal = Reviewer) -> dict[str, Any]:
    """Approve several cases; each is checked and audited on its own."""
    rt = runtime(request)
    results = []
    for cid in dict.fromkeys(body.case_ids):
        now = now_utc()
        try:
            r = _decide(rt, cid, "approve", body.note, who, now)
            results.append({"case_id": cid, "ok": True, "status": r["status"]})
        except queue.CaseError as exc:
            results.append(
                {"case_id": cid, "ok": False, "status_code": exc.status, "error": exc.message}
            )
    return {"results": results, "approved": sum(1 for r in results if r["ok"])}


@router.get("/payments/{transaction_id}", tags=["payments"], responses=_r(404))
def payment_status(
    transaction_id: str, request: Request, who: Principal = BackendOrAdmin
) -> dict[str, Any]:
    """settled | held_for_review | declined, and for a held payment its place and expected wait."""
    try:
        return queue.payment_status(runtime(request).engine, transaction_id, now_utc())
    except queue.CaseError as exc:
        raise _case_error(exc) from None


@router.post("/labels", tags=["labels"], responses=_r(400, 404))
def post_label(body: LabelIn, request: Request, who: Principal = Backend) -> dict[str, Any]:
    """A chargeback (or a backend's own label): stored, audited, and fed to the online features."""
    rt = runtime(request)
    now = now_utc()
    label_time = body.label_time or now
    if label_time > now + LABEL_FUTURE:
        raise _label_time_error("is in the future")
    online = rt.holder.current.online
    duplicate = {"transaction_id": body.transaction_id, "stored": False, "duplicate": True}
    try:
        with rt.engine.begin() as conn:
            known = conn.execute(
                select(db.decisions.c.payment_time).where(
                    db.decisions.c.transaction_id == body.transaction_id
                )
            ).first()
            if known is None:
                raise HTTPException(404, f"payment {body.transaction_id} not found")
            paid = known.payment_time
            if label_time < (paid if paid.tzinfo is not None else paid.replace(tzinfo=UTC)):
                raise _label_time_error("is before the payment")
            # a reviewer's own label (source "review") does not stop the chargeback that may
            # follow an approval: that one is how a wrong approval becomes known
            labelled = conn.execute(
                select(db.labels.c.id).where(
                    db.labels.c.transaction_id == body.transaction_id,
                    db.labels.c.source == "chargeback",
                )
            ).first()
            if labelled is not None:
                return duplicate
            # No SAVEPOINT here: under pysqlite a savepoint opened before any write starts the
            # transaction itself and its RELEASE commits it, label and all, before the rest.
            conn.execute(
                insert(db.labels).values(
                    transaction_id=body.transaction_id,
                    is_fraud=body.is_fraud,
                    label_time=label_time,
                    source="chargeback",
                    reason=body.reason,
                    created_at=now,
                )
            )
            queue.audit(
                conn,
                who,
                "label",
                body.transaction_id,
                {"is_fraud": body.is_fraud, "reason": body.reason},
                now,
            )
            # Last, inside the transaction: if the online state cannot take the label, the
            # label is not stored either and the backend's retry stores it (never a stored
            # label the features do not count). A label applied twice counts once.
            online.apply_label(body.transaction_id, body.is_fraud, label_time)
    except IntegrityError:  # a concurrent request stored it first (all rolled back here)
        return duplicate
    return {"transaction_id": body.transaction_id, "stored": True, "duplicate": False}


def _label_time_error(what: str) -> HTTPException:
    return HTTPException(422, f"label_time {what}")


@router.get("/labels/export", tags=["labels"])
def export_labels(
    request: Request,
    who: Principal = Admin,
    limit: int = Query(default=100_000, ge=1, le=1_000_000),
    format: Literal["json", "csv"] = Query(default="json"),
) -> Any:
    """Label events for retraining: `riskgate train --labels FILE` reads either format."""
    with runtime(request).engine.connect() as conn:
        rows = conn.execute(select(db.labels).order_by(db.labels.c.id).limit(limit)).all()
    items = [dict(r._mapping) for r in rows]
    if format == "csv":
        out = io.StringIO()
        names = list(rows[0]._mapping) if rows else ["transaction_id", "is_fraud", "label_time"]
        writer = csv.DictWriter(out, fieldnames=names)
        writer.writeheader()
        for item in items:
            writer.writerow(
                {k: rfc3339(v) if isinstance(v, datetime) else v for k, v in item.items()}
            )
        return Response(out.getvalue(), media_type="text/csv")
    return {"labels": items}


@router.get("/admin/audit", tags=["admin"])
def audit_log(
    request: Request,
    who: Principal = Admin,
    limit: int = Query(default=100, ge=1, le=1000),
    offset: int = Query(default=0, ge=0, le=BIG),
    action: str | None = Query(default=None, max_length=64),
) -> dict[str, Any]:
    q = select(db.audit_log)
    if action:
        q = q.where(db.audit_log.c.action == action)
    with runtime(request).engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(q.subquery())).scalar_one()
        rows = conn.execute(q.order_by(db.audit_log.c.id.desc()).limit(limit).offset(offset)).all()
    return {"items": [dict(r._mapping) for r in rows], "total": int(total)}


@router.get("/admin/outbox", tags=["admin"])
def outbox(
    request: Request, who: Principal = Admin, limit: int = Query(default=100, ge=1, le=1000)
) -> dict[str, Any]:
    with runtime(request).engine.connect() as conn:
        rows = conn.execute(select(db.outbox).order_by(db.outbox.c.id.desc()).limit(limit)).all()
    return {"items": [dict(r._mapping) for r in rows]}


# GET/PUT /admin/policy and the backtest / shadow routes: serving/http/policy_api.py


@router.post("/admin/reload", tags=["admin"], responses=_r(409))
def reload_model(request: Request, who: Principal = Admin) -> dict[str, Any]:
    """Swap in the registry's current champion; requests in flight finish on the old one."""
    from serving.core.metrics import m
    from serving.scoring.holder import ArtifactMismatchError

    rt = runtime(request)
    old = rt.holder.current.version
    try:
        version = rt.reload(who.name)
    except (LookupError, ArtifactMismatchError) as exc:
        m().reloads.labels(outcome="refused").inc()
        raise HTTPException(409, f"reload refused: {exc}") from None
    m().reloads.labels(outcome="ok").inc()
    with rt.engine.begin() as conn:
        queue.audit(conn, who, "reload", version, {"from": old, "to": version}, now_utc())
    return {"previous": old, "model_version": version}


def _merchants_router() -> APIRouter:
    from serving.http.merchants import router as merchants

    return merchants


def _appeals_router() -> APIRouter:
    from serving.http.appeals import router as appeals

    return appeals


def _calendar_router() -> APIRouter:
    from serving.http.calendar import router as calendar

    return calendar


def create_app() -> FastAPI:
    from serving.http import review_ops

    app = FastAPI(
        title="riskgate review API", docs_url=None, redoc_url=None, openapi_url="/api/openapi.json"
    )
    app.include_router(review_ops.router)  # first: its /cases/export precedes /cases/{case_id}
    app.include_router(router)
    app.include_router(metrics_router)  # /metrics: bounded labels only, no key
    from serving.http import policy_api  # imports this module: included here, not at the top

    app.include_router(policy_api.router)
    app.include_router(_merchants_router())
    app.include_router(_appeals_router())
    app.include_router(_calendar_router())

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # the fields and what is wrong with them, never the values: a value may be a card
        # number, or a float (NaN) no JSON response can carry
        detail = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        fields = ", ".join(".".join(str(p) for p in d["loc"]) for d in detail)
        return JSONResponse({"error": f"invalid request: {fields}", "detail": detail}, 422)

    @app.exception_handler(OperationalError)
    async def _db_down(_request: Request, _exc: OperationalError) -> JSONResponse:
        # the transaction was rolled back: nothing is half-written, the caller may retry
        return JSONResponse(
            {"error": "database unavailable, nothing was changed: retry"},
            status_code=503,
            headers={"Retry-After": "2"},
        )

    return app
