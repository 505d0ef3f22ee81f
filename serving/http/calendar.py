"""Delays announced ahead: the calendar of planned events (admin), the 24-hour forecast of the
review wait (backend, merchant, supervisor, admin), and the periodic check that sends the
delay webhooks."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from data import pan
from serving.core.auth import Principal
from serving.core.schemas import now_utc, utc_in_range
from serving.http.api import StrictJSONRoute, _r, role, runtime
from serving.review import delays, queue
from serving.review.forecast import (
    Calendar,
    Hour,
    baseline_inflow,
    forecast,
    nowcast_level,
    promotion_elasticity,
)
from serving.review.merchant_view import z
from serving.review.settlement import team_of
from serving.review.team import TeamConfig

router = APIRouter(responses=_r(401, 403, 503), route_class=StrictJSONRoute)
Admin = Depends(role("admin"))
ForecastReader = Depends(role("backend", "merchant", "supervisor", "admin"))
MAX_EVENTS = 500
MAX_WINDOW = timedelta(days=31)
HORIZON_HOURS = 24
CACHE_S = 60.0  # one forecast per worker per minute (and per calendar)


class EventIn(BaseModel):
    """One planned event over [start, end) UTC."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["promotion", "maintenance", "staffing"]
    name: str = Field(default="", max_length=120)
    start: datetime
    end: datetime
    volume_multiplier: float = Field(default=1.0, gt=0, le=50, allow_inf_nan=False)
    capacity_factor: float = Field(default=0.0, ge=0, le=1, allow_inf_nan=False)
    reviewers: int = Field(default=0, ge=0, le=1000)

    _name = field_validator("name")(pan.mask)

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        out = utc_in_range(v)
        assert out is not None
        return out

    @model_validator(mode="after")
    def _window(self) -> EventIn:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        if self.end - self.start > MAX_WINDOW:
            raise ValueError("end: a window lasts at most 31 days")
        if self.kind == "promotion" and "volume_multiplier" not in self.model_fields_set:
            raise ValueError("volume_multiplier: a promotion needs its expected volume multiplier")
        if self.kind == "staffing" and "reviewers" not in self.model_fields_set:
            raise ValueError("reviewers: a staffing change needs the number of reviewers")
        return self

    def doc(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "name": self.name, "start": z(self.start)}
        out["end"] = z(self.end)
        if self.kind == "promotion":
            out["volume_multiplier"] = self.volume_multiplier
        elif self.kind == "maintenance":
            out["capacity_factor"] = self.capacity_factor
        else:
            out["reviewers"] = self.reviewers
        return out


class CalendarIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    events: list[EventIn] = Field(max_length=MAX_EVENTS)


@router.get("/admin/calendar", tags=["admin"])
def get_calendar(request: Request, who: Principal = Admin) -> dict[str, Any]:
    return delays.read_calendar(runtime(request).engine)[0]


@router.put("/admin/calendar", tags=["admin"], responses=_r(400, 422))
def put_calendar(body: CalendarIn, request: Request, who: Principal = Admin) -> dict[str, Any]:
    """Replace the calendar (validated first; stored and audited in one transaction)."""
    rt = runtime(request)
    now = now_utc()
    doc = {"events": sorted((e.doc() for e in body.events), key=lambda d: (d["start"], d["kind"]))}
    with rt.engine.begin() as conn:
        delays.write_calendar(conn, doc, now, who.name)
        queue.audit(conn, who, "calendar", "calendar", doc, now)
    return doc


def service_team(rt: Any) -> TeamConfig:
    s = rt.settings
    return team_of(s.team_shifts, s.team_handling_minutes, s.sla_minutes)


_cache: dict[str, Any] = {}
_cache_lock = threading.Lock()


def current_forecast(rt: Any, now: datetime) -> tuple[Calendar, list[Hour]]:
    """The forecast from now, computed at most once a minute per calendar (it runs the team
    model `forecast_runs` times)."""
    doc, cal = delays.read_calendar(rt.engine)
    key = f"{int(now.timestamp() // CACHE_S)}:{json.dumps(doc, sort_keys=True)}"
    with _cache_lock:
        if _cache.get("key") == key:
            return cal, _cache["hours"]
    team = service_team(rt)
    created, open_p, recent = delays.forecast_inputs(rt.engine, now)
    now_s = now.timestamp()
    # how the past week's promotions' reviews grew with their volume (none: 1 +- 0.5)
    el = promotion_elasticity(created, now_s, cal)
    base = baseline_inflow(created, now_s, cal, elasticity=el.mean)
    level, level_sd = (
        nowcast_level(created, now_s, base, cal, elasticity=el.mean, elasticity_sd=el.sd)
        if len(created)
        else (1.0, 0.0)
    )
    hours = forecast(
        now,
        team,
        cal,
        base,
        open_p,
        recent,
        hours=HORIZON_HOURS,
        runs=rt.settings.forecast_runs,
        level=level,
        elasticity=el,
        level_sd=level_sd,
    )
    with _cache_lock:
        _cache.update(key=key, hours=hours)
    return cal, hours


def _hour(h: Hour) -> dict[str, Any]:
    return {
        "start": z(h.start),
        "expected_inflow": h.inflow,
        "reviewers": h.reviewers,
        "capacity_per_hour": h.capacity,
        "p50_wait_minutes": h.p50_min,
        "p90_wait_minutes": h.p90_min,
        "p90_band_minutes": list(h.p90_band) if h.p90_band else None,
        "over_sla": h.over_sla,
        "events": list(h.events),
    }


@router.get("/status/forecast", tags=["status"])
def status_forecast(request: Request, who: Principal = ForecastReader) -> dict[str, Any]:
    """Per hour for the next 24: expected review inflow, capacity, p50/p90 wait (held ->
    decided, minutes) and the band the p90 should fall in."""
    rt = runtime(request)
    now = now_utc()
    _, hours = current_forecast(rt, now)
    return {
        "as_of": z(now),
        "sla_minutes": rt.settings.sla_minutes,
        "hours": [_hour(h) for h in hours],
    }


def check_delays(rt: Any) -> int:
    """Send the delay webhooks that are due (run every minute by each worker; each event goes
    out once)."""
    from serving.http.merchants import open_queue

    now = now_utc()
    sent = 0
    horizon = now + timedelta(hours=HORIZON_HOURS)
    _, cal = delays.read_calendar(rt.engine)
    if any(e.start < horizon and e.end > now for e in cal.events):  # the team model's CPU
        cal, hours = current_forecast(rt, now)  # only when a window is coming
        sent += delays.notify_windows(cal, hours, rt.settings.sla_minutes, rt.engine)
    q = open_queue(rt, now)
    sent += delays.notify_payments(rt.engine, delays.held_payments(rt.engine, q))
    if sent:
        rt.wake_webhooks()
    return sent
