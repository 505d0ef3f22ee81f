"""Review operations routes: queues, escalation, reassignment, hold, four-eyes confirmation,
the team lead's stats and the case export. Thin: roles here, rules in serving.review."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from serving.core.auth import Principal
from serving.core.schemas import MAX_NOTE, now_utc
from serving.http.api import (
    MAX_BULK,
    CaseId,
    StrictJSONRoute,
    _apply_review_label,
    _case_error,
    _decide,
    _masked,
    _queues,
    _r,
    _route,
    explain_arms,
    role,
    runtime,
)
from serving.review import links, operations, queue, routing, stats
from serving.review.team import TeamConfig

router = APIRouter(responses=_r(401, 403, 503), route_class=StrictJSONRoute)

Reviewer = Depends(role("reviewer", "supervisor"))
Supervisor = Depends(role("supervisor"))
Lead = Depends(role("supervisor", "admin"))
ReviewerOrLead = Depends(role("reviewer", "supervisor", "admin"))
QueueName = Path(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_-]*$")


class MatchIn(BaseModel):
    """Every condition given must hold; amount band is [min_amount, max_amount)."""

    model_config = ConfigDict(extra="forbid")
    min_amount: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    max_amount: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    merchants: list[str] = Field(default=[], max_length=routing.MAX_LIST)
    countries: list[str] = Field(default=[], max_length=routing.MAX_LIST)
    min_score: int | None = Field(default=None, ge=0, le=99)
    max_score: int | None = Field(default=None, ge=0, le=99)
    source: Literal["model", "rules", "fallback"] | None = None


class QueueIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sla_minutes: float = Field(gt=0, le=10080, allow_inf_nan=False)
    decisions: list[Literal["approve", "decline", "decline_fraud"]] = Field(
        default=["approve", "decline", "decline_fraud"], min_length=1, max_length=3
    )
    mode: Literal["open", "locked"] = "open"
    match: MatchIn | None = None


class ReasonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=3, max_length=MAX_NOTE)

    _reason = field_validator("reason")(_masked)


class ReassignIn(ReasonIn):
    queue: str | None = Field(default=None, min_length=1, max_length=64)
    reviewer: str | None = Field(default=None, min_length=1, max_length=128)


class BulkDeclineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    case_ids: list[Annotated[int, Field(ge=1, le=2**63 - 1)]] = Field(
        min_length=1, max_length=MAX_BULK
    )
    decision: Literal["decline", "decline_fraud"] = "decline_fraud"
    note: str | None = Field(default=None, max_length=MAX_NOTE)

    _note = field_validator("note")(_masked)


class ConfirmIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agree: bool = True
    note: str | None = Field(default=None, max_length=MAX_NOTE)

    _note = field_validator("note")(_masked)


def _fail(exc: queue.CaseError) -> HTTPException:
    return _case_error(exc)


@router.get("/queues", tags=["review"])
def list_queues(request: Request, who: Principal = ReviewerOrLead) -> dict[str, Any]:
    """The queues in rule order, each with its SLA, allowed decisions, mode and open work."""
    rt = runtime(request)
    config = _queues(rt)
    return {
        "queues": operations.queue_overview(rt.engine, config, now_utc()),
        "four_eyes_amount": rt.settings.four_eyes_amount,
    }


@router.put("/queues/{name}", tags=["review"], responses=_r(422))
def put_queue(
    body: QueueIn, request: Request, name: str = QueueName, who: Principal = Lead
) -> dict[str, Any]:
    """Add or replace a queue (rule, SLA, decisions, mode); open cases no person moved are
    re-filed by the new rules. Audited."""
    rt = runtime(request)
    doc = {"name": name, **body.model_dump()}
    try:
        spec = routing.spec_from_doc(doc)
        config = operations.put_queue(rt.engine, spec, rt.settings.sla_minutes, who, now_utc())
    except ValueError as exc:
        raise HTTPException(422, f"invalid queue: {exc}") from None
    return routing.to_doc(config)


@router.post("/queues/{name}/next", tags=["review"], responses=_r(404, 409))
def next_case(request: Request, name: str = QueueName, who: Principal = Reviewer) -> Any:
    """Claim the next free case of this queue (the only way into a locked queue)."""
    rt = runtime(request)
    try:
        return operations.next_in_queue(
            rt.engine, _queues(rt), name, who, now_utc(), rt.settings.claim_minutes
        )
    except queue.CaseError as exc:
        raise _fail(exc) from None


@router.post("/cases/{case_id}/escalate", tags=["review"], responses=_r(404, 409, 422))
def escalate(
    case_id: CaseId, body: ReasonIn, request: Request, who: Principal = Reviewer
) -> dict[str, Any]:
    """Move the case to the supervisors' queue with a reason (audited)."""
    try:
        return operations.escalate(runtime(request).engine, case_id, body.reason, who, now_utc())
    except queue.CaseError as exc:
        raise _fail(exc) from None


@router.post("/cases/{case_id}/reassign", tags=["review"], responses=_r(404, 409, 422))
def reassign(
    case_id: CaseId, body: ReassignIn, request: Request, who: Principal = Supervisor
) -> dict[str, Any]:
    """A supervisor gives the case to another queue and/or reviewer; the reason is mandatory."""
    rt = runtime(request)
    if body.queue is None and body.reviewer is None:
        raise HTTPException(422, "queue or reviewer: say where the case goes")
    target = None
    if body.reviewer is not None:
        known = [
            p for _, p in rt.keys.entries if p.name == body.reviewer and p.role in REVIEW_ROLES
        ]
        if not known:
            raise HTTPException(422, f"reviewer: {body.reviewer} is not a reviewer's name")
        target = known[0]
    try:
        return operations.reassign(
            rt.engine,
            _queues(rt),
            case_id,
            body.reason,
            who,
            now_utc(),
            to_queue=body.queue,
            to_reviewer=target,
            minutes=rt.settings.claim_minutes,
        )
    except queue.CaseError as exc:
        raise _fail(exc) from None


REVIEW_ROLES = ("reviewer", "supervisor")


@router.post("/cases/{case_id}/hold", tags=["review"], responses=_r(404, 409, 422))
def hold(
    case_id: CaseId, body: ReasonIn, request: Request, who: Principal = Reviewer
) -> dict[str, Any]:
    """Waiting for the customer: the SLA clock stops (shown as paused) until resumed."""
    rt = runtime(request)
    try:
        operations.may_work(_queues(rt), _row(rt, case_id), who)
        return operations.hold(rt.engine, case_id, body.reason, who, now_utc())
    except queue.CaseError as exc:
        raise _fail(exc) from None


@router.post("/cases/{case_id}/resume", tags=["review"], responses=_r(404, 409))
def resume(case_id: CaseId, request: Request, who: Principal = Reviewer) -> dict[str, Any]:
    """End a hold: the SLA deadline moves by the time spent on hold."""
    rt = runtime(request)
    try:
        operations.may_work(_queues(rt), _row(rt, case_id), who)
        return operations.resume(rt.engine, case_id, who, now_utc())
    except queue.CaseError as exc:
        raise _fail(exc) from None


@router.post("/cases/{case_id}/confirm", tags=["review"], responses=_r(404, 409))
def confirm(
    case_id: CaseId, body: ConfirmIn, request: Request, who: Principal = Reviewer
) -> dict[str, Any]:
    """Four eyes: another reviewer (or a supervisor) confirms or rejects the proposed decision;
    only a confirmation settles or declines the payment."""
    rt = runtime(request)
    now = now_utc()
    try:
        operations.may_work(_queues(rt), _row(rt, case_id), who)
        result = queue.confirm(rt.engine, case_id, body.agree, body.note, who, now)
    except queue.CaseError as exc:
        raise _fail(exc) from None
    if "decision" in result:
        _apply_review_label(rt, result, now, who)
    return result


def _row(rt: Any, case_id: int) -> Any:
    from sqlalchemy import select

    from serving.store import db

    with rt.engine.connect() as conn:
        row = conn.execute(select(db.cases).where(db.cases.c.id == case_id)).first()
    if row is None:
        raise queue.CaseError(404, f"case {case_id} not found")
    return row


@router.get("/review/stats", tags=["review"])
def review_stats(
    request: Request,
    who: Principal = Lead,
    days: int = Query(default=7, ge=1, le=90),
    hours: int = Query(default=8, ge=1, le=48),
) -> dict[str, Any]:
    """Per queue and reviewer per day, per explanation arm, and demand vs supply ahead."""
    rt = runtime(request)
    now = now_utc()
    since = (now - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    _route(rt, now)
    summary = stats.summarise(operations.decided_rows(rt.engine, since))
    created, backlog = operations.arrivals(rt.engine, now - timedelta(days=7, hours=1))
    team = TeamConfig(sla_min=rt.settings.sla_minutes)
    return {
        "since": since,
        "until": now,
        **summary,
        "outlook": stats.outlook(created, backlog, now, team, hours),
        "explain_arms": list(explain_arms(rt)),
    }


EXPORT_COLUMNS = (
    "id",
    "transaction_id",
    "queue",
    "status",
    "amount",
    "currency",
    "score",
    "probability",
    "merchant_id",
    "created_at",
    "sla_due",
    "decision",
    "decided_by",
    "confirmed_by",
    "decided_at",
    "escalated_by",
    "escalation_reason",
    "hold_reason",
    "top_reason",
    "explain_arm",
)


@router.get("/cases/export", tags=["review"], responses=_r(422))
def export_cases(
    request: Request,
    who: Principal = Lead,
    format: Literal["csv", "json"] = Query(default="csv"),
    status: Literal["open", "decided", "all"] = "all",
    limit: int = Query(default=100_000, ge=1, le=1_000_000),
) -> Any:
    """Cases for the institution's own case system (no card data: the card is not exported)."""
    rt = runtime(request)
    now = now_utc()
    _route(rt, now)
    f = queue.CaseFilter(status=None if status == "all" else status, limit=limit)
    items, _ = queue.list_cases(rt.engine, f, now)
    rows = [{k: _cell(item.get(k)) for k in EXPORT_COLUMNS} for item in items]
    if format == "json":
        return {"cases": rows}
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(EXPORT_COLUMNS))
    writer.writeheader()
    writer.writerows(rows)
    return Response(
        out.getvalue(),
        media_type="text/csv",
        headers={"Content-Disposition": 'attachment; filename="cases.csv"'},
    )


def _cell(v: Any) -> Any:
    return v.isoformat().replace("+00:00", "Z") if isinstance(v, datetime) else v


@router.get("/cases/{case_id}/links", tags=["review"], responses=_r(404))
def case_links(case_id: CaseId, request: Request, who: Principal = ReviewerOrLead) -> Any:
    """Payments of the last 30 days sharing this case's card, device, IP, e-mail domain or
    customer, with decisions and known labels; `warning` says a linked confirmed fraud."""
    try:
        return links.case_links(runtime(request).engine, case_id)
    except queue.CaseError as exc:
        raise _fail(exc) from None


@router.post("/cases/bulk_decline", tags=["review"], responses=_r(400))
def bulk_decline(body: BulkDeclineIn, request: Request, who: Principal = Reviewer) -> Any:
    """Decline several cases (a burst of one attacker); each is checked and audited on its
    own, through its queue's rules and four eyes."""
    rt = runtime(request)
    results = []
    for cid in dict.fromkeys(body.case_ids):
        try:
            r = _decide(rt, cid, body.decision, body.note, who, now_utc())
            results.append({"case_id": cid, "ok": True, "status": r["status"]})
        except queue.CaseError as exc:
            results.append(
                {"case_id": cid, "ok": False, "status_code": exc.status, "error": exc.message}
            )
    return {"results": results, "declined": sum(1 for r in results if r["ok"])}
