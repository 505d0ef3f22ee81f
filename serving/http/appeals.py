"""POST /payments/{transaction_id}/appeal: a merchant (its own payments only) or the backend
contests a decline. Another merchant's payment answers 404 exactly like an unknown one.

An `Idempotency-Key` replays the first answer (same body) or is refused (another body, 422),
as on /score; the key and the appeal are stored in one transaction, so a request racing
with the same key gets the first answer."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select

from serving.core.auth import Principal
from serving.core.schemas import now_utc
from serving.http.api import MAX_NOTE, StrictJSONRoute, _masked, _r, role, runtime
from serving.review import appeals
from serving.store import db

router = APIRouter(responses=_r(401, 403, 503), route_class=StrictJSONRoute)
Appellant = Depends(role("backend", "merchant"))
TransactionId = Annotated[str, Path(min_length=1, max_length=128)]


class AppealIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str | None = Field(default=None, max_length=MAX_NOTE)

    _note = field_validator("note")(_masked)


def _key(raw: str | None, who: Principal) -> str | None:
    """The stored key: per endpoint and per caller key, so two merchants' keys never collide."""
    if raw is None:
        return None
    if not 1 <= len(raw) <= 150:
        raise HTTPException(400, "Idempotency-Key must be 1-150 characters")
    from data import pan

    if pan.contains(raw):
        raise HTTPException(400, "Idempotency-Key looks like it holds a card number (refused)")
    return f"appeal:{who.key_id}:{raw}"


@router.post(
    "/payments/{transaction_id}/appeal",
    tags=["payments"],
    status_code=201,
    responses=_r(400, 404, 409, 422),
)
def appeal(
    transaction_id: TransactionId,
    body: AppealIn,
    request: Request,
    who: Principal = Appellant,
    idempotency_key: str | None = Header(default=None),
) -> Any:
    """Contest a declined payment, once: a case in the appeals queue; the outcome comes as an
    `appeal.overturned` / `appeal.upheld` webhook and in the merchant's payment list."""
    rt = runtime(request)
    key = _key(idempotency_key, who)
    digest = hashlib.sha256(
        json.dumps({"t": transaction_id, "note": body.note}, sort_keys=True).encode()
    ).hexdigest()
    if key is not None and (replay := _replay(rt, key, digest)) is not None:
        return replay
    try:
        out = appeals.open_appeal(
            rt.engine,
            transaction_id,
            body.note,
            who,
            now_utc(),
            rt.settings.appeals_sla_minutes,
            None if key is None else (key, digest),
        )
    except appeals.AppealError as exc:
        # the same key raced and won: its answer is stored with the appeal, replay it
        if key is not None and exc.status == 409 and (replay := _replay(rt, key, digest)):
            return replay
        raise HTTPException(exc.status, exc.message) from None
    rt.wake_webhooks()
    return JSONResponse(out, status_code=201)


def _replay(rt: Any, key: str, digest: str) -> JSONResponse | None:
    i = db.idempotency.c
    with rt.engine.connect() as conn:
        row = conn.execute(select(i.body_hash, i.response).where(i.key == key)).first()
    if row is None:
        return None
    if row.body_hash != digest:
        raise HTTPException(422, "Idempotency-Key was already used with a different body")
    return JSONResponse({**row.response, "replayed": True}, status_code=201)
