"""Every timestamp riskgate emits is RFC 3339 with an offset (`2026-12-02T03:50:00Z`).

The main endpoints are called on the in-process service after one payment was scored, held,
claimed and decided and a chargeback was posted; every string in their JSON (and in the CSV
export) that looks like a date-time must parse as RFC 3339 with an explicit offset.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime
from typing import Any

from serving.core.schemas import rfc3339
from tests.serving.helpers import ADMIN, BACKEND, REVIEWER, high_risk

LOOKS_LIKE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def _strings(node: Any, where: str = "") -> list[tuple[str, str]]:
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in _strings(v, f"{where}.{k}")]
    if isinstance(node, list):
        return [s for i, v in enumerate(node) for s in _strings(v, f"{where}[{i}]")]
    return [(where, node)] if isinstance(node, str) else []


def _bad_times(body: Any, label: str) -> list[str]:
    bad = []
    for where, text in _strings(body):
        if LOOKS_LIKE_TIME.search(text) and not (
            RFC3339.match(text) and datetime.fromisoformat(text).utcoffset() is not None
        ):
            bad.append(f"{label}{where} = {text!r}")
    return bad


def test_the_helper_writes_utc_with_z():
    assert rfc3339(datetime(2026, 12, 2, 3, 50, tzinfo=UTC)) == "2026-12-02T03:50:00Z"
    assert rfc3339(datetime(2026, 12, 2, 3, 50, 0, 120000)) == "2026-12-02T03:50:00.120000Z"


def test_every_timestamp_in_the_main_endpoints_is_rfc3339_with_an_offset(client: Any):
    payment = high_risk("ts-1")
    scored = client.post("/score", json=payment, headers=BACKEND)
    assert scored.status_code == 200, scored.text
    case_id = scored.json()["case_id"]
    assert case_id is not None
    bodies: dict[str, Any] = {"POST /score": scored.json()}
    claim = client.post(f"/cases/{case_id}/claim", headers=REVIEWER)
    bodies["POST claim"] = claim.json()
    decided = client.post(
        f"/cases/{case_id}/decision", json={"decision": "decline_fraud"}, headers=REVIEWER
    )
    assert decided.status_code == 200, decided.text
    bodies["POST decision"] = decided.json()
    label = {"transaction_id": "txn-ts-1", "is_fraud": True, "reason": "chargeback"}
    assert client.post("/labels", json=label, headers=BACKEND).status_code in (200, 201)
    for name, path, headers in (
        ("cases", "/cases?status=decided", REVIEWER),
        ("case", f"/cases/{case_id}", REVIEWER),
        ("payment", "/payments/txn-ts-1", BACKEND),
        ("audit", "/admin/audit", ADMIN),
        ("outbox", "/admin/outbox", ADMIN),
        ("labels", "/labels/export", ADMIN),
        ("policy", "/admin/policy", ADMIN),
    ):
        response = client.get(path, headers=headers)
        assert response.status_code == 200, f"{path}: {response.text}"
        bodies[name] = response.json()
    times = [t for body in bodies.values() for _, t in _strings(body) if LOOKS_LIKE_TIME.search(t)]
    assert len(times) >= 10, "the walk found too few timestamps to mean anything"
    bad = [b for label, body in bodies.items() for b in _bad_times(body, label)]
    export = client.get("/labels/export?format=csv", headers=ADMIN)
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert rows
    bad += _bad_times(rows, "labels.csv")
    assert bad == [], "\n".join(bad)
