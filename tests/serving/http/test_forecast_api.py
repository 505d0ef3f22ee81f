"""Delays announced ahead, through the in-process service: the calendar (validated, audited,
durable), the 24-hour forecast, and the delay webhooks sent once per payment and per window."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from serving.store import db
from tests.serving.helpers import (
    ADMIN,
    BACKEND,
    MERCHANT,
    MERCHANT_ID,
    REVIEWER,
    SUPERVISOR,
    counts,
    high_risk,
    running_service,
    service_env_for,
)


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
CALENDAR = {
    "events": [
        # nobody reviews for the next three hours: every held payment will miss the SLA
        {
            "kind": "staffing",
            "name": "offsite",
            "start": iso(NOW),
            "end": iso(NOW + timedelta(hours=3)),
            "reviewers": 0,
        },
        {
            "kind": "promotion",
            "name": "winter sale",
            "start": iso(NOW + timedelta(hours=5)),
            "end": iso(NOW + timedelta(hours=9)),
            "volume_multiplier": 3.0,
        },
        {
            "kind": "maintenance",
            "name": "db upgrade",
            "start": iso(NOW + timedelta(hours=12)),
            "end": iso(NOW + timedelta(hours=13)),
        },
    ]
}


STORED: dict[str, Any] = {}  # the calendar as the PUT answered it (defaults filled in)


@pytest.fixture(scope="module")
def env(tmp_path_factory, model_dir) -> Iterator[dict[str, str]]:
    work = tmp_path_factory.mktemp("forecast")
    with service_env_for(work, model_dir, RISKGATE_TEAM_SHIFTS="00-00:2") as values:
        yield values


def seed_history(engine: Any, per_hour: int = 4) -> None:
    """Yesterday's reviews: `per_hour` decided cases in each of the last 24 hours."""
    rows_d, rows_c = [], []
    for h in range(1, 25):
        for i in range(per_hour):
            at = NOW - timedelta(hours=h) + timedelta(minutes=15 * i)
            txn = f"hist-{h}-{i}"
            rows_d.append(
                {
                    "transaction_id": txn,
                    "created_at": at,
                    "payment_time": at,
                    "decision": "review",
                    "source": "model",
                    "status": "settled",
                    "status_at": at,
                    "amount": 10.0,
                    "currency": "EUR",
                    "merchant_id": "m-hist",
                    "card_id": "c-hist",
                    "response": {},
                }
            )
            rows_c.append(
                {
                    "transaction_id": txn,
                    "created_at": at,
                    "sla_due": at + timedelta(minutes=15),
                    "status": "decided",
                    "priority": 1.0 + i,
                    "amount": 10.0,
                    "merchant_id": "m-hist",
                    "version": 1,
                    "payment": {},
                    "features": {},
                    "factors": [],
                    "reasons": [],
                    "decision": "approve",
                    "decided_at": at + timedelta(minutes=5),
                }
            )
    with engine.begin() as conn:
        conn.execute(db.decisions.insert(), rows_d)
        conn.execute(db.cases.insert(), rows_c)


def clock_within_now_hour() -> datetime:
    """The real clock, held at the last second of NOW's hour once it has passed: the calendar
    above is laid out from NOW, so a run that crosses the hour would shift every hour index."""
    return min(datetime.now(UTC), NOW + timedelta(minutes=59, seconds=59))


@pytest.fixture(scope="module")
def svc(env) -> Iterator[Any]:
    with pytest.MonkeyPatch.context() as mp, running_service() as client:
        mp.setattr("serving.http.calendar.now_utc", clock_within_now_hour)
        seed_history(rt().engine)
        r = client.put("/admin/calendar", json=CALENDAR, headers=ADMIN)
        assert r.status_code == 200, r.text
        STORED.update(r.json())
        yield client


def rt() -> Any:
    from serving.http.service import http_app

    return http_app.state.runtime


def event(**changes: Any) -> dict[str, Any]:
    return {**CALENDAR["events"][1], **changes}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"events": [event(end=iso(NOW))]}, "end"),  # ends before it starts
        ({"events": [event(volume_multiplier=0)]}, "volume_multiplier"),
        (
            json.dumps({"events": [event(volume_multiplier=7)]}).replace(": 7", ": 1e309"),
            "volume_multiplier",
        ),
        (
            {"events": [{k: v for k, v in event().items() if k != "volume_multiplier"}]},
            "volume_multiplier",
        ),
        ({"events": [event(kind="holiday")]}, "kind"),
        ({"events": [event(start="tomorrow")]}, "start"),
        ({"events": [event(end=iso(NOW + timedelta(days=40)))]}, "end"),
        ({"events": [event(surprise=1)]}, "surprise"),
        ({"events": [{**CALENDAR["events"][0], "reviewers": -1}]}, "reviewers"),
        ({"events": [{**CALENDAR["events"][2], "capacity_factor": 2}]}, "capacity_factor"),
        ({"events": [event()] * 501}, "events"),
    ],
)
def test_a_bad_calendar_is_refused_naming_the_field_and_changes_nothing(svc, body, field):
    before = counts(rt().engine)
    if isinstance(body, str):  # a number no JSON encoder writes
        sent = {"content": body, "headers": {**ADMIN, "Content-Type": "application/json"}}
    else:
        sent = {"json": body, "headers": ADMIN}
    r = svc.put("/admin/calendar", **sent)
    assert r.status_code in (400, 422), r.text
    assert field in r.text
    assert counts(rt().engine) == before
    assert svc.get("/admin/calendar", headers=ADMIN).json() == STORED


def test_the_calendar_is_stored_and_audited(svc):
    assert [e["name"] for e in STORED["events"]] == ["offsite", "winter sale", "db upgrade"]
    assert STORED["events"][2]["capacity_factor"] == 0.0  # a maintenance window stops reviews
    assert svc.get("/admin/calendar", headers=ADMIN).json() == STORED
    audit = svc.get("/admin/audit", params={"action": "calendar"}, headers=ADMIN).json()
    assert audit["total"] == 1
    assert audit["items"][0]["role"] == "admin"
    assert audit["items"][0]["detail"] == STORED
    assert audit["items"][0]["at"]


def test_the_calendar_survives_a_restart(svc):
    """Stored in the database: a new service process on the same database reads it back."""
    with running_service() as again:
        assert again.get("/admin/calendar", headers=ADMIN).json() == STORED


def test_the_forecast_covers_24_hours_with_inflow_capacity_and_waits(svc):
    for headers in (BACKEND, MERCHANT, SUPERVISOR, ADMIN):
        r = svc.get("/status/forecast", headers=headers)
        assert r.status_code == 200, r.text
    assert svc.get("/status/forecast", headers=REVIEWER).status_code == 403
    body = svc.get("/status/forecast", headers=MERCHANT).json()
    hours = body["hours"]
    assert len(hours) == 24
    assert hours[0]["start"] == iso(NOW)
    assert body["sla_minutes"] == 15
    assert hours[1]["capacity_per_hour"] == 0  # the offsite
    # yesterday's four an hour, times the nowcast level fading with distance to the baseline
    inflow = [h["expected_inflow"] for h in hours]
    assert inflow[20] == pytest.approx(inflow[22], abs=0.05)  # faded: the baseline alone
    far = inflow[20]
    assert abs(inflow[1] - far) >= abs(inflow[4] - far) - 0.05
    assert inflow[1] > 1
    assert hours[1]["over_sla"]
    assert hours[1]["p90_wait_minutes"] > 60
    assert hours[1]["events"] == ["offsite"]
    assert hours[12]["capacity_per_hour"] == 0  # the maintenance window
    assert hours[12]["events"] == ["db upgrade"]
    assert hours[6]["events"] == ["winter sale"]
    # the 3x sale: about three times its neighbours (the level fades a little in between)
    assert 2.5 * min(inflow[5], far) <= inflow[6] <= 3.5 * max(inflow[5], far)
    staffed = hours[4]
    assert staffed["capacity_per_hour"] > 0
    assert staffed["p50_wait_minutes"] is not None


def test_delay_webhooks_go_out_once_per_payment_and_per_window(svc):
    from serving.http.calendar import check_delays

    late = svc.post(
        "/score", json={**high_risk("late"), "merchant_id": MERCHANT_ID}, headers=BACKEND
    )
    assert late.json()["decision"] == "review"
    txn = late.json()["transaction_id"]
    check_delays(rt())
    check_delays(rt())  # and again: nothing new
    with rt().engine.connect() as conn:
        rows = conn.execute(
            select(db.outbox.c.type, db.outbox.c.transaction_id, db.outbox.c.payload).where(
                db.outbox.c.type.in_(("payment.delayed", "review.delay_expected"))
            )
        ).all()
    delayed = [r for r in rows if r.type == "payment.delayed" and r.transaction_id == txn]
    assert len(delayed) == 1
    payload = delayed[0].payload
    assert payload["merchant_id"] == MERCHANT_ID
    assert payload["reason_category"] == "routine security review"
    assert "reasons" not in payload
    assert "probability" not in payload
    windows = [r.payload["window"]["name"] for r in rows if r.type == "review.delay_expected"]
    assert sorted(windows) == sorted(set(windows))  # once per window
    assert "offsite" in windows
    assert "db upgrade" in windows
    with rt().engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(db.outbox)).scalar_one()
    check_delays(rt())
    with rt().engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(db.outbox)).scalar_one() == total


def test_settlement_times_follow_the_calendar_staffing(svc):
    """With nobody reviewing for three hours, a held payment cannot settle before then."""
    r = svc.post(
        "/score", json={**high_risk("offsite"), "merchant_id": MERCHANT_ID}, headers=BACKEND
    )
    txn = r.json()["transaction_id"]
    item = svc.get(f"/merchants/{MERCHANT_ID}/payments/{txn}", headers=MERCHANT).json()
    p50 = datetime.fromisoformat(item["expected_settlement"]["p50"].replace("Z", "+00:00"))
    assert p50 >= NOW + timedelta(hours=3)
