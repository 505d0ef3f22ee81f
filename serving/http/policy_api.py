"""The policy's admin routes: read and change it, backtest a change before it applies, run it
in shadow beside the live one, promote or drop the shadow, and the history of changes.

A change goes live (`PUT /admin/policy`) only with a backtest of exactly that policy made after
the policy in force was set, or with `force=true`; either way the audit row carries the
backtest's figures (or says there was none). A rule that cannot be evaluated is refused here
with its name and the reason (400), never at scoring time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from serving.core.auth import Principal
from serving.core.schemas import MAX_NOTE, now_utc, utc_in_range
from serving.http.api import Admin, PolicyIn, StrictJSONRoute, _masked, _r, runtime
from serving.review import queue
from serving.scoring import backtest, whatif
from serving.scoring.policy import PolicyConfig, parse_config, to_doc
from serving.scoring.rulefields import RuleError

router = APIRouter(responses=_r(401, 403, 503), route_class=StrictJSONRoute, tags=["admin"])
HISTORY_ACTIONS = ("policy", "policy_shadow", "policy_promote", "policy_drop")


class PolicyPutIn(PolicyIn):
    reason: str | None = Field(default=None, max_length=MAX_NOTE, description="why (audited)")

    _reason = field_validator("reason")(_masked)


class PeriodIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: datetime | None = None
    end: datetime | None = None  # exclusive
    days: int = Field(default=30, ge=1, le=366, description="length when start is not given")

    @field_validator("start", "end")
    @classmethod
    def _in_range(cls, v: datetime | None) -> datetime | None:
        return utc_in_range(v)


class BacktestIn(PolicyIn):
    """The proposed policy (as for PUT) and the period of payment times to replay (default:
    the 30 days ending at the latest stored payment)."""

    period: PeriodIn = PeriodIn()


def _parse(doc: dict[str, Any]) -> PolicyConfig:
    """The policy, or a 400 naming what is wrong (the rule and the reason for a rule)."""
    try:
        return parse_config(doc)
    except RuleError as exc:
        raise HTTPException(
            400, {"message": f"invalid policy: {exc}", "rule": exc.rule, "reason": exc.reason}
        ) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise HTTPException(400, f"invalid policy: {exc}") from None


def _policy_doc(body: PolicyIn) -> dict[str, Any]:
    return body.model_dump(include={"allow", "block", "rules", "fallback_max_amount"})


@router.get("/admin/policy")
def get_policy(request: Request, who: Principal = Admin) -> dict[str, Any]:
    return to_doc(runtime(request).policy())


@router.post("/admin/policy/backtest", responses=_r(400))
def backtest_policy(body: BacktestIn, request: Request, who: Principal = Admin) -> dict[str, Any]:
    """Replay the period's stored payments through the proposed policy and the one in force."""
    rt = runtime(request)
    proposed = _parse(_policy_doc(body))
    try:
        period = whatif.period_of(rt.engine, body.period.start, body.period.end, body.period.days)
    except ValueError as exc:
        raise HTTPException(400, f"period: {exc}") from None
    report = whatif.run_backtest(rt.engine, proposed, rt.policy(), period, as_of=now_utc())
    report["backtest_id"] = whatif.record(rt.engine, report, proposed, who.name, now_utc())
    return report


@router.put("/admin/policy", responses=_r(400, 409))
def put_policy(
    body: PolicyPutIn,
    request: Request,
    who: Principal = Admin,
    force: bool = False,
    mode: Literal["live", "shadow"] = "live",
) -> dict[str, Any]:
    """Replace lists and rules (validated first; audited with the backtest's figures), or with
    `mode=shadow` run them beside the live policy for new payments without acting."""
    rt = runtime(request)
    doc = _policy_doc(body)
    config = _parse(doc)
    now = now_utc()
    if mode == "shadow":
        value = rt.set_shadow(to_doc(config), who.name)
        with rt.engine.begin() as conn:
            detail = {"shadow_id": value["id"], "policy": value["policy"], "reason": body.reason}
            queue.audit(conn, who, "policy_shadow", "policy", detail, now)
        return {"mode": "shadow", **value}
    found = whatif.latest_backtest(rt.engine, backtest.digest(config), rt.policy_at())
    if found is None and not force:
        since = rt.policy_at()
        raise HTTPException(
            409,
            "no backtest of this policy"
            + (f" since the policy in force was set ({_iso(since)})" if since else "")
            + ": POST /admin/policy/backtest first, or PUT with force=true",
        )
    rt.set_policy(doc, who.name)
    detail = {
        "policy": to_doc(config),
        "reason": body.reason,
        "force": found is None,
        "backtest_id": None if found is None else found["id"],
        "backtest": None if found is None else found["summary"],
    }
    with rt.engine.begin() as conn:
        queue.audit(conn, who, "policy", "policy", detail, now)
    return to_doc(config)


@router.get("/admin/policy/history")
def policy_history(
    request: Request, who: Principal = Admin, limit: int = Query(default=50, ge=1, le=500)
) -> dict[str, Any]:
    """Every policy change, newest first: who, when, why, and the backtest's figures."""
    return {"items": whatif.history(runtime(request).engine, HISTORY_ACTIONS, limit)}


@router.get("/admin/policy/shadow", responses=_r(404))
def shadow_compare(request: Request, who: Principal = Admin) -> dict[str, Any]:
    """The shadow policy and how its decisions compare with the live ones so far."""
    rt = runtime(request)
    shadow = rt.shadow()
    if shadow is None:
        raise HTTPException(404, "no shadow policy running")
    return {
        "shadow_id": shadow[0],
        "policy": to_doc(shadow[1]),
        **whatif.shadow_comparison(rt.engine, shadow[0]),
    }


@router.post("/admin/policy/shadow/promote", responses=_r(404))
def shadow_promote(request: Request, who: Principal = Admin) -> dict[str, Any]:
    """The shadow policy becomes the live one (audited with its comparison so far)."""
    rt = runtime(request)
    shadow = rt.shadow()
    if shadow is None:
        raise HTTPException(404, "no shadow policy running")
    compared = whatif.shadow_comparison(rt.engine, shadow[0])
    config = rt.set_policy(to_doc(shadow[1]), who.name)
    rt.set_shadow(None, who.name)
    detail = {"shadow_id": shadow[0], "policy": to_doc(config), "shadow": compared}
    with rt.engine.begin() as conn:
        queue.audit(conn, who, "policy_promote", "policy", detail, now_utc())
    return {"promoted": shadow[0], "policy": to_doc(config), "shadow": compared}


@router.delete("/admin/policy/shadow", responses=_r(404))
def shadow_drop(request: Request, who: Principal = Admin) -> dict[str, Any]:
    """Stop the shadow policy; the live one is unchanged (audited with its comparison)."""
    rt = runtime(request)
    shadow = rt.shadow()
    if shadow is None:
        raise HTTPException(404, "no shadow policy running")
    compared = whatif.shadow_comparison(rt.engine, shadow[0])
    rt.set_shadow(None, who.name)
    detail = {"shadow_id": shadow[0], "policy": to_doc(shadow[1]), "shadow": compared}
    with rt.engine.begin() as conn:
        queue.audit(conn, who, "policy_drop", "policy", detail, now_utc())
    return {"dropped": shadow[0], "shadow": compared}


def _iso(v: datetime) -> str:
    return v.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
