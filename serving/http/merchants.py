"""A merchant's own view: its payments and what is held, for the merchant's key (its own id
only), the backend and admin. Another merchant's id or payment is 404, never 403: the answer
must not confirm that it exists."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import unquote_to_bytes

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from pydantic import AfterValidator

from serving.core.auth import Principal
from serving.core.schemas import now_utc, utc_in_range
from serving.http.api import StrictJSONRoute, _r, role, runtime
from serving.review import merchant_view
from serving.review.settlement import CapacityCurve, handling_cv2, team_of

router = APIRouter(responses=_r(401, 403, 503), route_class=StrictJSONRoute)
MerchantReader = Depends(role("backend", "admin", "merchant"))
MerchantId = Annotated[str, Path(min_length=1, max_length=128)]
TransactionId = Annotated[str, Path(min_length=1, max_length=128)]
Since = Annotated[datetime | None, AfterValidator(utc_in_range)]
NOT_FOUND = "not found"


def _scoped(who: Principal, merchant_id: str, request: Request) -> None:
    """A merchant key reads exactly its own id (byte for byte: no case folding, no second
    decoding); anything else is 404 with the same body whether or not the id exists.

    The id is checked against the raw path decoded once: a layer that decoded the path twice
    (`merch%255F1` -> `merch_1`) must not turn another id into the caller's."""
    raw = request.scope.get("raw_path")
    if raw is not None:
        parts = raw.split(b"?", 1)[0].split(b"/")
        if len(parts) < 3 or unquote_to_bytes(parts[2]).decode("utf-8", "replace") != merchant_id:
            raise HTTPException(404, NOT_FOUND)
    if who.role == "merchant" and who.merchant_id != merchant_id:
        raise HTTPException(404, NOT_FOUND)


def open_queue(rt: Any, now: datetime) -> merchant_view.Queue:
    """The queue as it stands, against the staffed capacity from now on."""
    from serving.review.delays import read_calendar

    s = rt.settings
    team = team_of(s.team_shifts, s.team_handling_minutes, s.sla_minutes)
    staffing = read_calendar(rt.engine)[1].staffing(team)  # shifts, staffing, maintenance
    curve = CapacityCurve.build(now, staffing, team.mean_handling_min)
    return merchant_view.open_queue(rt.engine, now, curve, handling_cv2(team))


@router.get("/merchants/{merchant_id}/payments", tags=["merchants"], responses=_r(404, 422))
def merchant_payments(
    merchant_id: MerchantId,
    request: Request,
    status: merchant_view.Status | None = None,
    since: Since = None,
    limit: int = Query(default=100, ge=1, le=merchant_view.MAX_LIMIT),
    who: Principal = MerchantReader,
) -> dict[str, Any]:
    """The merchant's payments, newest first: status, amount, time held, and for a held one
    its expected settlement (p50 / p90) and a reason category."""
    _scoped(who, merchant_id, request)
    rt = runtime(request)
    now = now_utc()
    q = open_queue(rt, now)
    items = merchant_view.payments(
        rt.engine, merchant_id, q, status=status, since=since, limit=limit
    )
    return {"merchant_id": merchant_id, "as_of": merchant_view.z(now), "items": items}


@router.get(
    "/merchants/{merchant_id}/payments/{transaction_id}", tags=["merchants"], responses=_r(404)
)
def merchant_payment(
    merchant_id: MerchantId,
    transaction_id: TransactionId,
    request: Request,
    who: Principal = MerchantReader,
) -> dict[str, Any]:
    """One of the merchant's payments; another merchant's is 404 (as an unknown one)."""
    _scoped(who, merchant_id, request)
    rt = runtime(request)
    found = merchant_view.payment(rt.engine, merchant_id, transaction_id, open_queue(rt, now_utc()))
    if found is None:
        raise HTTPException(404, NOT_FOUND)
    return found


@router.get("/merchants/{merchant_id}/summary", tags=["merchants"], responses=_r(404))
def merchant_summary(
    merchant_id: MerchantId,
    request: Request,
    who: Principal = MerchantReader,
) -> dict[str, Any]:
    """Money held now, expected to settle in the next hour and today, declined today."""
    _scoped(who, merchant_id, request)
    rt = runtime(request)
    return merchant_view.summary(rt.engine, merchant_id, open_queue(rt, now_utc()))
