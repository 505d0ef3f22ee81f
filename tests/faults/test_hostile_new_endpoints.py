"""Hostile input on the endpoints added for review operations, merchants, the calendar, appeals
and policy backtests: NaN, Infinity and 1e309 in numbers get 400/422 naming the field and change
nothing; a card number in any free text (a reason, an event name, a note) is never stored or
echoed, in any form."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

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
)

BAD_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e309"]
CARD_FORMS = [
    "4111 1111 1111 1111",
    "4111.1111.1111.1111",
    "tok_4111111111111111",
    "4111-1111-1111-1111x",
]
KEYS = {"reviewer": REVIEWER, "supervisor": SUPERVISOR, "admin": ADMIN, "merchant": MERCHANT}

EVENT = (
    '{"kind": "promotion", "name": "p", "start": "2030-01-01T00:00:00Z", '
    '"end": "2030-01-01T05:00:00Z", "volume_multiplier": BAD}'
)
BODIES = [  # (method, path, role, raw JSON with BAD for the number, the field to be named)
    ("PUT", "/queues/vip", "supervisor", '{"sla_minutes": BAD}', "sla_minutes"),
    (
        "PUT",
        "/queues/vip",
        "supervisor",
        '{"sla_minutes": 60, "match": {"min_amount": BAD}}',
        "min_amount",
    ),
    ("PUT", "/admin/calendar", "admin", '{"events": [' + EVENT + "]}", "volume_multiplier"),
    (
        "POST",
        "/admin/policy/backtest",
        "admin",
        '{"fallback_max_amount": BAD}',
        "fallback_max_amount",
    ),
    ("POST", "/admin/policy/backtest", "admin", '{"period": {"days": BAD}}', "days"),
    ("POST", "/cases/CASE/escalate", "reviewer", '{"reason": BAD}', "reason"),
    ("POST", "/cases/CASE/hold", "reviewer", '{"reason": BAD}', "reason"),
    ("POST", "/cases/CASE/confirm", "supervisor", '{"agree": BAD}', "agree"),
    ("POST", "/cases/bulk_decline", "reviewer", '{"case_ids": [BAD]}', "case_ids"),
]


@pytest.fixture(scope="module")
def seeded(module_env: dict[str, str]) -> Iterator[tuple[Any, Any, dict[str, Any]]]:
    with running_service() as client:
        from serving.http.service import http_app

        rt = http_app.state.runtime
        r = client.post(
            "/score", json={**high_risk("hn-case"), "merchant_id": MERCHANT_ID}, headers=BACKEND
        )
        assert r.json()["decision"] == "review", r.text
        yield client, rt, {"case": r.json()["case_id"], "txn": r.json()["transaction_id"]}


@pytest.mark.parametrize("bad", BAD_NUMBERS)
@pytest.mark.parametrize(("method", "path", "role", "body", "field"), BODIES)
def test_non_finite_numbers_are_refused_naming_the_field(
    seeded, method, path, role, body, field, bad
):
    client, rt, ids = seeded
    before = counts(rt.engine)

    r = client.request(
        method,
        path.replace("CASE", str(ids["case"])),
        content=body.replace("BAD", bad),
        headers={**KEYS[role], "Content-Type": "application/json"},
    )

    assert r.status_code in (400, 422), r.text
    assert field in r.text
    assert counts(rt.engine) == before


@pytest.mark.parametrize("limit", ["1e309", "NaN", "99999999999999999999"])
def test_huge_or_non_finite_query_numbers_are_refused(seeded, limit):
    client, _rt, _ids = seeded
    r = client.get(f"/merchants/{MERCHANT_ID}/payments?limit={limit}", headers=MERCHANT)

    assert r.status_code == 422, r.text
    assert "limit" in r.text


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


@pytest.mark.parametrize("card", CARD_FORMS)
def test_a_card_number_in_free_text_is_never_stored_or_echoed(seeded, card):
    client, rt, ids = seeded
    reason = f"customer read out {card} on the phone"
    answers = [
        client.post(f"/cases/{ids['case']}/hold", json={"reason": reason}, headers=REVIEWER),
        client.post(f"/cases/{ids['case']}/resume", headers=REVIEWER),
        client.put(
            "/admin/calendar",
            json={
                "events": [
                    {
                        "kind": "promotion",
                        "name": f"promo {card}",
                        "start": "2030-01-01T00:00:00Z",
                        "end": "2030-01-01T05:00:00Z",
                        "volume_multiplier": 2,
                    }
                ]
            },
            headers=ADMIN,
        ),
    ]
    for r in answers:
        assert r.status_code < 500, r.text
        assert "4111111111111111" not in _digits(r.text) or r.status_code >= 400

    from sqlalchemy import text

    with rt.engine.connect() as conn:
        for table in ("audit_log", "settings", "cases", "outbox"):
            for row in conn.execute(text(f"SELECT * FROM {table}")):
                assert "4111111111111111" not in _digits(" ".join(map(str, row))), (table, row)
