"""Every endpoint x every caller: backend, reviewer, supervisor, admin, merchant, no key, a wrong
key, a bad scheme.

The expected table is built from the intended roles (not read back from the code):
  backend   /score, /score_batch, GET /payments/{id}, POST /labels, GET /merchants/*,
            POST /payments/{id}/appeal
  reviewer  GET /cases, GET /cases/{id}, claim (a case, or the next one) / release / decision,
            POST /cases/bulk_approve, GET /queues, POST /queues/{name}/next, escalate, hold,
            resume, confirm (four eyes), POST /cases/bulk_decline, GET /cases/{id}/links
  supervisor  everything a reviewer may, plus PUT /queues/{name}, POST /cases/{id}/reassign,
            GET /review/stats and GET /cases/export
  merchant  only its own merchant routes and appeals (none of these but /whoami)
  admin     /admin/*, GET /labels/export, PUT /queues/{name}, GET /review/stats,
            GET /cases/export, and read-only GET /cases, /cases/{id}/links,
            /cases/{id}, /payments/{id}, GET /queues
  forecast  GET /status/forecast: backend, merchant, supervisor (the team lead's console), admin
  any role  GET /whoami
  nobody    /healthz /livez /readyz /metrics /docs.json /api/openapi.json /console/ (no key)
A caller without a valid key gets 401, a valid key of another role 403, an allowed role
anything but 401/403 (2xx, or a 4xx about the request itself: 404, 409, 422) and never a 5xx.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.serving.helpers import (
    ADMIN,
    BACKEND,
    MERCHANT,
    MERCHANT_ID,
    REVIEWER,
    SUPERVISOR,
    high_risk,
    low_risk,
    running_service,
)

IDENTITIES: dict[str, dict[str, str]] = {
    "backend": BACKEND,
    "reviewer": REVIEWER,
    "supervisor": SUPERVISOR,
    "admin": ADMIN,
    "merchant": MERCHANT,
    "no-key": {},
    "wrong-key": {"Authorization": "Bearer not-a-key-of-this-service-0123"},
    "bad-scheme": {"Authorization": f"Basic {BACKEND['Authorization'].split()[1]}"},
}
ROLES = ("backend", "reviewer", "supervisor", "admin", "merchant")
REVIEW = ("reviewer", "supervisor")
LEAD = ("supervisor", "admin")
OPEN = "open"
MERCHANT_VIEW = ("backend", "admin", "merchant")  # a merchant key: its own id only


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # {case}, {case2}, {case3}, {txn} are filled from the seeded data
    allowed: tuple[str, ...] | str  # roles, or OPEN
    body: Any = None

    @property
    def name(self) -> str:
        return f"{self.method} {self.path}"


ENDPOINTS = [
    Endpoint("POST", "/score", ("backend",), low_risk("am-score")),
    Endpoint("POST", "/score_batch", ("backend",), {"payments": [low_risk("am-batch")]}),
    Endpoint("GET", "/payments/{txn}", ("backend", "admin")),
    Endpoint("POST", "/labels", ("backend",), {"transaction_id": "{txn}", "is_fraud": False}),
    # merchant: its own declined payments only (another's is 404); the settled {txn} is 409
    Endpoint("POST", "/payments/{txn}/appeal", ("backend", "merchant"), {"note": "genuine"}),
    Endpoint("GET", "/cases", (*REVIEW, "admin")),
    Endpoint("GET", "/cases/{case}", (*REVIEW, "admin")),
    Endpoint("POST", "/cases/next/claim", REVIEW),
    Endpoint("POST", "/cases/{case}/claim", REVIEW),
    Endpoint("POST", "/cases/{case}/release", REVIEW),
    Endpoint("POST", "/cases/{case2}/decision", REVIEW, {"decision": "approve"}),
    Endpoint("POST", "/cases/bulk_approve", REVIEW, {"case_ids": ["{case3}"]}),
    Endpoint("GET", "/queues", (*REVIEW, "admin")),
    Endpoint("PUT", "/queues/{queue}", LEAD, {"sla_minutes": 30, "match": {"min_amount": 1e6}}),
    Endpoint("POST", "/queues/{rq}/next", REVIEW),
    Endpoint("POST", "/cases/{case4}/escalate", REVIEW, {"reason": "needs a supervisor"}),
    Endpoint("POST", "/cases/{case5}/hold", REVIEW, {"reason": "calling the customer"}),
    Endpoint("POST", "/cases/{case5}/resume", REVIEW),
    Endpoint("POST", "/cases/{case5}/confirm", REVIEW, {"agree": True}),
    Endpoint(
        "POST", "/cases/{case6}/reassign", ("supervisor",), {"reason": "skills", "queue": "{rq}"}
    ),
    Endpoint("GET", "/cases/{case}/links", (*REVIEW, "admin")),
    Endpoint("POST", "/cases/bulk_decline", REVIEW, {"case_ids": ["{case3}"]}),
    Endpoint("GET", "/review/stats", LEAD),
    Endpoint("GET", "/cases/export", LEAD),
    Endpoint("GET", "/labels/export", ("admin",)),
    Endpoint("GET", "/admin/audit", ("admin",)),
    Endpoint("GET", "/admin/outbox", ("admin",)),
    Endpoint("GET", "/admin/policy", ("admin",)),
    Endpoint("PUT", "/admin/policy", ("admin",), {}),
    Endpoint("POST", "/admin/policy/backtest", ("admin",), {}),
    Endpoint("GET", "/admin/policy/history", ("admin",)),
    Endpoint("GET", "/admin/policy/shadow", ("admin",)),
    Endpoint("POST", "/admin/policy/shadow/promote", ("admin",)),
    Endpoint("DELETE", "/admin/policy/shadow", ("admin",)),
    Endpoint("POST", "/admin/reload", ("admin",)),
    Endpoint("GET", "/admin/calendar", ("admin",)),
    Endpoint("PUT", "/admin/calendar", ("admin",), {"events": []}),
    Endpoint("GET", "/status/forecast", ("backend", "merchant", "supervisor", "admin")),
    Endpoint("GET", "/whoami", ROLES),
    Endpoint("GET", "/merchants/{merchant}/payments", MERCHANT_VIEW),
    Endpoint("GET", "/merchants/{merchant}/payments/{mtxn}", MERCHANT_VIEW),
    Endpoint("GET", "/merchants/{merchant}/summary", MERCHANT_VIEW),
    Endpoint("GET", "/healthz", OPEN),
    Endpoint("GET", "/livez", OPEN),
    Endpoint("GET", "/readyz", OPEN),
    Endpoint("GET", "/metrics", OPEN),  # served by riskgate, bounded labels (test_metrics_labels)
    Endpoint("GET", "/docs.json", OPEN),
    Endpoint("GET", "/api/openapi.json", OPEN),
    Endpoint("GET", "/console/", OPEN),
]


def expected(endpoint: Endpoint, identity: str) -> str:
    if endpoint.allowed == OPEN:
        return "200"
    if identity not in ROLES:
        return "401"
    return "ok" if identity in endpoint.allowed else "403"


def fill(value: Any, ids: dict[str, Any]) -> Any:
    """Replace "{name}" placeholders (in paths and bodies) with the seeded ids."""
    if isinstance(value, str):
        for k, v in ids.items():
            if value == f"{{{k}}}":
                return v
            value = value.replace(f"{{{k}}}", str(v))
        return value
    if isinstance(value, list):
        return [fill(v, ids) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, ids) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def seeded(module_env: dict[str, str]) -> Iterator[tuple[Any, dict[str, Any]]]:
    """An in-process service with a settled payment and six open cases."""
    with running_service() as client:
        ids: dict[str, Any] = {}
        r = client.post("/score", json=low_risk("am-low"), headers=BACKEND)
        assert r.status_code == 200, r.text
        ids["txn"] = r.json()["transaction_id"]
        ids["queue"], ids["rq"] = "vip", "residual"
        ids["merchant"] = MERCHANT_ID
        r = client.post(
            "/score", json={**low_risk("am-merch"), "merchant_id": MERCHANT_ID}, headers=BACKEND
        )
        assert r.status_code == 200, r.text
        ids["mtxn"] = r.json()["transaction_id"]
        for name in ("case", "case2", "case3", "case4", "case5", "case6"):
            r = client.post("/score", json=high_risk(f"am-{name}"), headers=BACKEND)
            assert r.json()["decision"] == "review", r.text
            ids[name] = r.json()["case_id"]
        yield client, ids


@pytest.mark.parametrize("identity", list(IDENTITIES))
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_auth_matrix(seeded, endpoint, identity):
    client, ids = seeded
    r = client.request(
        endpoint.method,
        fill(endpoint.path, ids),
        json=fill(endpoint.body, ids),
        headers=IDENTITIES[identity],
    )
    want = expected(endpoint, identity)
    where = f"{endpoint.name} as {identity}: {r.status_code} {r.text[:200]}"

    assert r.status_code < 500, where
    if want == "ok":
        assert r.status_code not in (401, 403), where
    else:
        assert str(r.status_code) == want, where
    if want == "401":
        assert r.json().get("error"), where  # says what is wrong with the credentials


BODY_ENDPOINTS = [e for e in ENDPOINTS if e.method in ("POST", "PUT") and e.allowed != OPEN]


BAD_BODIES: dict[str, dict[str, Any]] = {
    "invalid-body": {"json": {"unexpected": [1, 2, 3]}},
    "malformed-json": {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
    "not-utf8": {"content": b'{"note": "\xe9"}', "headers": {"Content-Type": "application/json"}},
}


@pytest.mark.parametrize("body", list(BAD_BODIES))
@pytest.mark.parametrize("endpoint", BODY_ENDPOINTS, ids=lambda e: e.name)
def test_credentials_are_checked_before_the_body(seeded, endpoint, body):
    """A caller without a valid key learns nothing about the request or its schema: 401 (as
    /score does), not 400/422 - the body is not even read."""
    client, ids = seeded
    kwargs: dict[str, Any] = dict(BAD_BODIES[body])
    anonymous = client.request(endpoint.method, fill(endpoint.path, ids), **kwargs)
    kwargs.setdefault("headers", {})
    kwargs["headers"] = {**kwargs["headers"], **IDENTITIES["wrong-key"]}
    wrong = client.request(endpoint.method, fill(endpoint.path, ids), **kwargs)

    assert anonymous.status_code == 401, f"{anonymous.status_code} {anonymous.text[:200]}"
    assert wrong.status_code == 401, f"{wrong.status_code} {wrong.text[:200]}"


def test_the_matrix_covers_every_documented_operation(seeded):
    """A new route must get its row in the table above (with its intended roles)."""
    client, _ = seeded
    documented = {
        f"{method.upper()} {path}"
        for doc in ("/docs.json", "/api/openapi.json")
        for path, item in client.get(doc).json()["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }
    in_matrix = {
        re.sub(r"\{(queue|rq)\}", "{name}", re.sub(r"\{case\d*\}", "{case_id}", e.name))
        .replace("{txn}", "{transaction_id}")
        .replace("{mtxn}", "{transaction_id}")
        .replace("{merchant}", "{merchant_id}")
        for e in ENDPOINTS
    }
    missing = documented - in_matrix
    assert missing == set()


MERCHANT_PATHS = [e for e in ENDPOINTS if e.path.startswith("/merchants/")]
NOT_THIS_MERCHANT = ["merch_000342", "MERCH_000341", "merch%255F000341", "merch_000341%20"]


@pytest.mark.parametrize("other", NOT_THIS_MERCHANT)
@pytest.mark.parametrize("endpoint", MERCHANT_PATHS, ids=lambda e: e.name)
def test_a_merchant_key_gets_404_for_any_other_merchant(seeded, endpoint, other):
    """Not 403: the answer must not confirm that the other merchant (or payment) exists.
    Backend and admin are not scoped; their rows are in the matrix above."""
    client, ids = seeded
    r = client.get(fill(endpoint.path, {**ids, "merchant": other}), headers=MERCHANT)
    assert r.status_code == 404, f"{endpoint.name} as merchant for {other}: {r.text[:200]}"
    assert r.json() == {"error": "not found"}
