"""Finding 4 (issue 15): hostile JSON bodies on the review, label and admin routes.

NaN, Infinity and 1e309 (a float that overflows to infinity) are not JSON numbers a client
should send; a decision `version` of 2**63-1 overflows the database's integers; /score sent as
multipart/form-data is not the JSON contract. Each must be refused with 400/422 naming the
field, with nothing stored, never a 500.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.serving.helpers import (
    ADMIN,
    BACKEND,
    REVIEWER,
    counts,
    high_risk,
    low_risk,
    running_service,
)


@pytest.fixture(scope="module")
def seeded(module_env: dict[str, str]) -> Iterator[tuple[Any, Any, dict[str, Any]]]:
    with running_service() as client:
        from serving.http.service import http_app

        rt = http_app.state.runtime
        ids: dict[str, Any] = {}
        r = client.post("/score", json=low_risk("hb-low"), headers=BACKEND)
        assert r.status_code == 200, r.text
        ids["txn"] = r.json()["transaction_id"]
        r = client.post("/score", json=high_risk("hb-case"), headers=BACKEND)
        assert r.json()["decision"] == "review", r.text
        ids["case"] = r.json()["case_id"]
        yield client, rt, ids


BAD_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e309"]


RULE = '{"name": "r", "field": "amount", "op": ">", "value": BAD, "action": "review"}'
BODIES = [  # (method, path, role, raw JSON body with BAD for the number, field to be named)
    ("POST", "/cases/CASE/decision", "reviewer", '{"decision": "approve", "note": BAD}', "note"),
    ("POST", "/cases/CASE/decision", "reviewer", '{"decision": BAD}', "decision"),
    (
        "POST",
        "/cases/CASE/decision",
        "reviewer",
        '{"decision": "approve", "version": BAD}',
        "version",
    ),
    ("POST", "/cases/bulk_approve", "reviewer", '{"case_ids": [BAD]}', "case_ids"),
    ("POST", "/cases/bulk_approve", "reviewer", '{"case_ids": [CASE], "note": BAD}', "note"),
    ("POST", "/labels", "backend", '{"transaction_id": "TXN", "reason": BAD}', "reason"),
    ("POST", "/labels", "backend", '{"transaction_id": BAD}', "transaction_id"),
    ("PUT", "/admin/policy", "admin", '{"fallback_max_amount": BAD}', "fallback_max_amount"),
    ("PUT", "/admin/policy", "admin", '{"rules": [' + RULE + "]}", "value"),
]
HEADERS = {"reviewer": REVIEWER, "backend": BACKEND, "admin": ADMIN}


def _fill(text: str, ids: dict[str, Any], bad: str) -> str:
    return text.replace("CASE", str(ids["case"])).replace("TXN", ids["txn"]).replace("BAD", bad)


@pytest.mark.parametrize("bad", BAD_NUMBERS)
def test_non_finite_numbers_are_refused_naming_the_field(seeded, bad):
    client, rt, ids = seeded
    before = counts(rt.engine)
    policy_before = client.get("/admin/policy", headers=ADMIN).json()
    for method, path, role, raw, name in BODIES:
        path, raw = _fill(path, ids, bad), _fill(raw, ids, bad)
        headers = {**HEADERS[role], "Content-Type": "application/json"}
        r = client.request(method, path, content=raw, headers=headers)
        assert r.status_code in (400, 422), (path, raw, r.status_code, r.text)
        assert name in r.text, (path, raw, r.text)
        assert bad.lstrip("-") not in r.text, ("the value is echoed", r.text)
    assert counts(rt.engine) == before
    assert client.get("/admin/policy", headers=ADMIN).json() == policy_before
    r = client.get(f"/cases/{ids['case']}", headers=REVIEWER)
    assert r.json()["status"] == "open"


@pytest.mark.parametrize("version", [2**63 - 1, 2**63, 2**64, -1])
def test_a_version_out_of_range_is_refused_naming_the_field(seeded, version):
    client, rt, ids = seeded
    before = counts(rt.engine)
    r = client.post(
        f"/cases/{ids['case']}/decision",
        json={"decision": "approve", "version": version},
        headers=REVIEWER,
    )
    assert r.status_code in (400, 422), r.text
    assert "version" in r.text
    assert counts(rt.engine) == before
    assert client.get(f"/cases/{ids['case']}", headers=REVIEWER).json()["status"] == "open"


def test_multipart_score_is_refused_not_crashed(seeded):
    client, rt, _ = seeded
    before = counts(rt.engine)
    payment = {k: str(v) for k, v in low_risk("hb-multipart").items()}
    as_form = {k: (None, v) for k, v in payment.items()}  # multipart, one part per field
    for kwargs in ({"files": as_form}, {"data": payment}):  # multipart, urlencoded
        r = client.post("/score", headers=BACKEND, **kwargs)  # type: ignore[arg-type]
        assert r.status_code in (400, 415, 422), (r.status_code, r.text)
        assert "Content-Type" in r.text
    r = client.post(
        "/score",
        content=b"--b\r\nContent-Disposition: form-data; name=amount\r\n\r\nNaN\r\n--b--\r\n",
        headers={**BACKEND, "Content-Type": "multipart/form-data; boundary=b"},
    )
    assert r.status_code in (400, 415, 422), (r.status_code, r.text)
    assert counts(rt.engine) == before


def _big_label(size: int) -> bytes:
    return b'{"transaction_id": "TXN", "reason": "' + b"x" * size + b'"}'


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_over_the_limit_gets_413_naming_the_body_and_changes_nothing(seeded, chunked):
    client, rt, ids = seeded
    limit = rt.settings.max_body_bytes
    body = _big_label(limit + 10).replace(b"TXN", ids["txn"].encode())
    before = counts(rt.engine)

    if chunked:  # no Content-Length: the limit is counted as the body arrives
        r = client.post(
            "/labels",
            content=iter([body[i : i + 65_536] for i in range(0, len(body), 65_536)]),
            headers={**BACKEND, "Content-Type": "application/json"},
        )
    else:
        r = client.post(
            "/labels", content=body, headers={**BACKEND, "Content-Type": "application/json"}
        )

    assert r.status_code == 413, r.text
    assert r.json()["detail"][0]["loc"] == ["body"]
    assert str(limit) in r.json()["error"]
    assert counts(rt.engine) == before


def test_a_chunked_body_under_the_limit_still_reaches_the_route(seeded):
    client, _rt, ids = seeded
    body = b'{"transaction_id": "%s", "is_fraud": false}' % ids["txn"].encode()

    r = client.post(
        "/labels",
        content=iter([body[:10], body[10:]]),
        headers={**BACKEND, "Content-Type": "application/json"},
    )

    assert r.status_code == 200, r.text
