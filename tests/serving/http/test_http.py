"""The HTTP contract through the in-process ASGI app: scoring, refusals, idempotency, review."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from serving.store import db
from tests.serving.helpers import (
    ADMIN,
    BACKEND,
    BOB,
    COUNTED,
    REVIEWER,
    TEST_PAN,
    counts,
    high_risk,
    low_risk,
    running_service,
)

EMPTY = dict.fromkeys(COUNTED, 0)


def score(client: Any, payment: dict[str, Any], **headers: str) -> Any:
    return client.post("/score", json=payment, headers={**BACKEND, **headers})


def held_case(client: Any, tag: str) -> int:
    """Score a high-risk payment and return its case id."""
    r = score(client, high_risk(tag))
    assert r.status_code == 200, r.text
    assert r.json()["decision"] == "review"
    return int(r.json()["case_id"])


def error_locs(body: dict[str, Any]) -> list[str]:
    """Every field name mentioned in an error body's locations."""
    return [str(part) for item in body.get("detail") or [] for part in item.get("loc", [])]


# -- scoring ------------------------------------------------------------------------------------
def test_low_risk_payment_is_approved_by_the_model_and_settled(client, runtime):
    r = score(client, low_risk("a"))

    assert r.status_code == 200, r.text
    body = r.json()
    assert body["decision"] == "approve"
    assert body["decision_source"] == "model"
    assert body["status"] == "settled"
    assert body["case_id"] is None
    assert body["replayed"] is False
    assert body["probability"] < body["review_threshold"]
    assert counts(runtime.engine)["decisions"] == 1
    assert counts(runtime.engine)["cases"] == 0
    status = client.get("/payments/txn-a", headers=BACKEND)
    assert status.status_code == 200
    assert status.json()["status"] == "settled"


def test_high_risk_payment_is_held_and_its_case_stored_with_reasons(client, runtime):
    r = score(client, high_risk("b"))

    assert r.status_code == 200, r.text
    body = r.json()
    assert body["decision"] == "review"
    assert body["decision_source"] == "model"
    assert body["status"] == "held_for_review"
    assert body["probability"] >= body["review_threshold"]
    assert isinstance(body["case_id"], int)
    reasons = body["reasons"]
    assert reasons, "a held payment must explain itself"
    contributions = [x["contribution"] for x in reasons]
    assert all(c > 0 for c in contributions)
    assert contributions == sorted(contributions, reverse=True)
    assert all(x["text"] and x["feature"] in runtime.holder.current.online.names for x in reasons)

    listed = client.get("/cases", headers=REVIEWER)
    assert listed.status_code == 200
    (item,) = listed.json()["items"]
    assert item["id"] == body["case_id"]
    assert item["transaction_id"] == "txn-b"
    assert item["status"] == "open"
    assert item["top_reason"] == reasons[0]["text"]
    assert listed.json()["stats"]["depth"] == 1

    case = client.get(f"/cases/{body['case_id']}", headers=REVIEWER).json()
    assert case["reasons"] == reasons
    assert case["payment"]["card_id"] != "card-b", "the case must show a masked card id"
    assert case["payment"]["amount"] == 2500.0
    held = client.get("/payments/txn-b", headers=BACKEND).json()
    assert held["status"] == "held_for_review"
    assert held["case_id"] == body["case_id"]
    assert held["queue_position"] == 1


def test_batch_scores_every_payment_and_answers_in_order(client, runtime):
    payments = [low_risk("c1"), high_risk("c2"), low_risk("c3")]

    r = client.post("/score_batch", json={"payments": payments}, headers=BACKEND)

    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["transaction_id"] for x in results] == ["txn-c1", "txn-c2", "txn-c3"]
    assert [x["decision"] for x in results] == ["approve", "review", "approve"]
    assert counts(runtime.engine)["decisions"] == 3
    assert counts(runtime.engine)["cases"] == 1


# -- authentication and roles -------------------------------------------------------------------
@pytest.mark.parametrize(
    "request_kwargs",
    [
        {"json": {"amount": "x"}},
        {"content": b"{", "headers": {"Content-Type": "application/json"}},
    ],
    ids=["invalid-payment", "malformed-json"],
)
@pytest.mark.parametrize("path", ["/score", "/score_batch"])
def test_caller_without_a_key_gets_401_before_the_body_is_examined(client, path, request_kwargs):
    """Authentication comes first: an anonymous caller learns nothing about the payment schema
    (no 400 listing the fields) and cannot fill the error log with validation tracebacks."""
    r = client.post(path, **request_kwargs)

    assert r.status_code == 401, r.text[:300]


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer not-a-known-key-0123456789"}, 401),
        ({"Authorization": "Basic " + BACKEND["Authorization"].split()[1]}, 401),
        (REVIEWER, 403),
        (ADMIN, 403),
    ],
    ids=["no-key", "unknown-key", "not-bearer", "reviewer-key", "admin-key"],
)
def test_score_refuses_callers_without_a_backend_key(client, runtime, headers, status):
    r = client.post("/score", json=low_risk("d"), headers=headers)

    assert r.status_code == status, r.text
    assert counts(runtime.engine) == EMPTY


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("GET", "/cases", {}, 401),
        ("GET", "/cases", BACKEND, 403),
        ("GET", "/payments/txn-x", REVIEWER, 403),
        ("POST", "/admin/reload", REVIEWER, 403),
        ("POST", "/admin/reload", BACKEND, 403),
        ("GET", "/admin/audit", REVIEWER, 403),
        ("POST", "/cases/1/claim", ADMIN, 403),
    ],
)
def test_review_and_admin_routes_check_the_callers_role(client, method, path, headers, status):
    r = client.request(method, path, headers=headers)

    assert r.status_code == status, r.text
    assert "error" in r.json()


# -- idempotency --------------------------------------------------------------------------------
def test_same_idempotency_key_and_body_replays_the_identical_response(client, runtime):
    payment = high_risk("e")
    first = score(client, payment, **{"Idempotency-Key": "key-e"})
    assert first.status_code == 200, first.text
    before = counts(runtime.engine)

    again = score(client, payment, **{"Idempotency-Key": "key-e"})

    assert again.status_code == 200, again.text
    assert again.json() == {**first.json(), "replayed": True}
    after = counts(runtime.engine)
    assert after == before
    assert after["decisions"] == 1
    assert after["cases"] == 1


def test_same_idempotency_key_with_another_body_is_refused(client, runtime):
    first = score(client, low_risk("f"), **{"Idempotency-Key": "key-f"})
    assert first.status_code == 200, first.text
    before = counts(runtime.engine)

    other = score(client, {**low_risk("f"), "amount": 13.0}, **{"Idempotency-Key": "key-f"})
    another_payment = score(client, low_risk("f2"), **{"Idempotency-Key": "key-f"})

    assert other.status_code == 422, other.text
    assert "Idempotency-Key" in other.json()["error"]
    assert another_payment.status_code == 422, another_payment.text
    assert counts(runtime.engine) == before
    assert client.get("/payments/txn-f2", headers=BACKEND).status_code == 404


def test_idempotency_key_longer_than_200_characters_is_refused(client, runtime):
    r = score(client, low_risk("g"), **{"Idempotency-Key": "k" * 201})

    assert r.status_code == 400, r.text
    assert counts(runtime.engine) == EMPTY


def test_same_transaction_scored_twice_keeps_one_decision_and_one_case(client, runtime):
    payment = high_risk("h")
    first = score(client, payment)
    second = score(client, payment)

    assert first.status_code == second.status_code == 200
    assert first.json()["replayed"] is False
    assert second.json()["replayed"] is True
    assert second.json()["case_id"] == first.json()["case_id"]
    assert second.json()["decision"] == first.json()["decision"] == "review"
    c = counts(runtime.engine)
    assert c["decisions"] == 1
    assert c["cases"] == 1


# -- refused input ------------------------------------------------------------------------------
def _without(field: str) -> dict[str, Any]:
    p = low_risk("bad")
    del p[field]
    return p


BAD_PAYMENTS = {
    "missing-amount": (_without("amount"), "amount"),
    "missing-card": (_without("card_id"), "card_id"),
    "amount-not-a-number": ({**low_risk("bad"), "amount": "twelve"}, "amount"),
    "timestamp-not-a-date": ({**low_risk("bad"), "timestamp": "yesterday"}, "timestamp"),
    "negative-amount": ({**low_risk("bad"), "amount": -1.0}, "amount"),
    "unknown-currency": ({**low_risk("bad"), "currency": "XYZ"}, "currency"),
    "card-number-in-card-id": ({**low_risk("bad"), "card_id": TEST_PAN}, "card_id"),
    "card-number-in-device-id": ({**low_risk("bad"), "device_id": "4111111111111111"}, "device_id"),
    "unknown-field": ({**low_risk("bad"), "pan": "tok_123"}, "pan"),
    "bad-channel": ({**low_risk("bad"), "channel": "telepathy"}, "channel"),
}


@pytest.mark.parametrize(("payment", "field"), BAD_PAYMENTS.values(), ids=BAD_PAYMENTS.keys())
def test_invalid_payment_is_refused_naming_the_field_and_nothing_is_stored(
    client, runtime, payment, field
):
    r = score(client, payment)

    assert 400 <= r.status_code < 500, r.text
    assert field in error_locs(r.json()), r.text
    assert counts(runtime.engine) == EMPTY


def test_malformed_json_is_refused_and_nothing_is_stored(client, runtime):
    r = client.post(
        "/score",
        content=b'{"transaction_id": "txn-m", "amount": ',
        headers={**BACKEND, "Content-Type": "application/json"},
    )

    assert 400 <= r.status_code < 500, r.text
    assert "json" in r.text.lower()
    assert counts(runtime.engine) == EMPTY


def test_refused_card_number_is_not_echoed_back(client):
    r = score(client, {**low_risk("pan"), "card_id": TEST_PAN})

    assert r.status_code == 400
    assert "4111" not in r.text


PAN_REQUESTS = {
    "in-card-id": ("/score", {**low_risk("pan1"), "card_id": TEST_PAN}),
    "in-stray-field": ("/score", {**low_risk("pan2"), "pan": TEST_PAN}),
    "in-a-batch": ("/score_batch", {"payments": [{**low_risk("pan3"), "card_id": TEST_PAN}]}),
}


@pytest.mark.parametrize(("path", "body"), PAN_REQUESTS.values(), ids=PAN_REQUESTS.keys())
def test_card_number_sent_to_the_api_never_reaches_the_logs(client, caplog, path, body):
    """A refused raw card number must not be written to the server log either (PCI DSS 3.4).

    BentoML logs a request's validation error with its traceback; pydantic's error text quotes
    the offending input (input_value='4111 1111 1111 1111') unless the model hides it.
    """
    caplog.set_level(logging.DEBUG)

    r = client.post(path, json=body, headers=BACKEND)

    assert r.status_code == 400, r.text
    assert caplog.records, "expected the refusal to be logged"
    logged = caplog.text + "".join(
        logging.Formatter().formatException(x.exc_info) for x in caplog.records if x.exc_info
    )
    assert "4111" not in logged, "a raw card number was written to the log"


def test_batch_of_more_than_1000_payments_is_refused_and_nothing_is_stored(client, runtime):
    payments = [low_risk(f"big{i}") for i in range(1001)]

    r = client.post("/score_batch", json={"payments": payments}, headers=BACKEND)

    assert 400 <= r.status_code < 500, r.text[:500]
    assert "payments" in error_locs(r.json())
    assert counts(runtime.engine) == EMPTY


def test_batch_body_with_an_unknown_top_level_field_is_refused(client, runtime):
    """The batch body is {"payments": [...]} and nothing else (schemas.BatchIn forbids extras)."""
    body = {"payments": [low_risk("extra")], "dry_run": True}

    r = client.post("/score_batch", json=body, headers=BACKEND)

    assert 400 <= r.status_code < 500, r.text[:300]
    assert "dry_run" in error_locs(r.json())
    assert counts(runtime.engine) == EMPTY


def test_batch_with_a_repeated_transaction_id_is_refused_and_nothing_is_stored(client, runtime):
    payments = [low_risk("rep"), low_risk("rep")]

    r = client.post("/score_batch", json={"payments": payments}, headers=BACKEND)

    assert 400 <= r.status_code < 500, r.text
    assert "transaction_id" in json.dumps(r.json())
    assert counts(runtime.engine) == EMPTY


# -- health and admin ---------------------------------------------------------------------------
def test_readyz_is_ok_with_a_model(client):
    assert client.get("/readyz").status_code == 200
    assert client.get("/healthz").status_code == 200


def test_admin_reload_swaps_in_the_local_model(client, runtime):
    r = client.post("/admin/reload", headers=ADMIN)

    assert r.status_code == 200, r.text
    assert r.json()["model_version"] == runtime.holder.current.version
    assert r.json()["model_version"].startswith("local:")
    audit = client.get("/admin/audit", headers=ADMIN, params={"action": "reload"}).json()
    assert audit["total"] == 1
    assert score(client, low_risk("after-reload")).json()["decision_source"] == "model"


@pytest.fixture
def own_model_dir(model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the artifact, so a test may break it without touching the others."""
    copy = Path(shutil.copytree(model_dir, tmp_path / "own-model"))
    monkeypatch.setenv("RISKGATE_MODEL_DIR", str(copy))
    return copy


def test_reload_of_an_artifact_built_on_other_features_is_refused_and_old_model_kept(
    service_env, own_model_dir
):
    with running_service() as client:
        from serving.http.service import http_app

        holder = http_app.state.runtime.holder
        serving_model = holder.current.model
        meta_path = own_model_dir / "riskmodel.json"
        meta = json.loads(meta_path.read_text())
        meta["feature_set_version"] = "fs-000000000000"
        meta_path.write_text(json.dumps(meta))

        r = client.post("/admin/reload", headers=ADMIN)

        assert r.status_code == 409, r.text
        assert "reload refused" in r.json()["error"]
        assert holder.current.model is serving_model
        assert client.get("/readyz").status_code == 200
        assert score(client, high_risk("kept")).json()["decision_source"] == "model"


def test_reload_of_an_incomplete_artifact_is_refused_and_old_model_kept(service_env, own_model_dir):
    """A half-copied artifact directory (booster missing) must give 409, not a server error."""
    with running_service() as client:
        from serving.http.service import http_app

        holder = http_app.state.runtime.holder
        serving_model = holder.current.model
        (own_model_dir / "booster.txt").unlink()

        crash = None
        try:
            r = client.post("/admin/reload", headers=ADMIN)
        except OSError as exc:  # the TestClient re-raises an unhandled server exception
            crash = exc

        assert crash is None, f"/admin/reload crashed instead of refusing: {crash!r}"
        assert r.status_code == 409, r.text
        assert holder.current.model is serving_model


# -- review workflow ----------------------------------------------------------------------------
def test_reviewer_claims_and_approves_a_case_once_and_the_payment_settles(client, runtime):
    case_id = held_case(client, "w")

    claim = client.post(f"/cases/{case_id}/claim", headers=REVIEWER)
    assert claim.status_code == 200, claim.text
    assert claim.json()["claimed_by"] == "alice"
    other = client.post(f"/cases/{case_id}/claim", headers=BOB)
    assert other.status_code == 409
    by_bob = client.post(f"/cases/{case_id}/decision", json={"decision": "approve"}, headers=BOB)
    assert by_bob.status_code == 409, "a case claimed by alice must not be decided by bob"

    decided = client.post(
        f"/cases/{case_id}/decision", json={"decision": "approve", "note": "ok"}, headers=REVIEWER
    )
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "settled"
    again = client.post(
        f"/cases/{case_id}/decision", json={"decision": "decline_fraud"}, headers=REVIEWER
    )
    assert again.status_code == 409

    status = client.get("/payments/txn-w", headers=BACKEND).json()
    assert status["status"] == "settled"
    assert status["decision_at_scoring"] == "review"
    case = client.get(f"/cases/{case_id}", headers=REVIEWER).json()
    assert case["status"] == "decided"
    assert case["decision"] == "approve"
    assert case["decided_by"] == "alice"
    with runtime.engine.connect() as conn:
        labels = conn.execute(select(db.labels)).all()
        events = conn.execute(select(db.outbox)).all()
    assert [(x.transaction_id, x.is_fraud, x.source) for x in labels] == [
        ("txn-w", False, "review")
    ]
    assert [e.type for e in events] == ["payment.settled"]


def test_fraud_decision_declines_the_payment(client):
    case_id = held_case(client, "fraud")

    r = client.post(
        f"/cases/{case_id}/decision", json={"decision": "decline_fraud"}, headers=REVIEWER
    )

    assert r.status_code == 200, r.text
    assert client.get("/payments/txn-fraud", headers=BACKEND).json()["status"] == "declined"


def test_bulk_approve_decides_each_case_and_reports_the_ones_it_could_not(client):
    first, second = held_case(client, "bulk1"), held_case(client, "bulk2")
    body = {"case_ids": [first, second, 999]}

    r = client.post("/cases/bulk_approve", json=body, headers=REVIEWER)

    assert r.status_code == 200, r.text
    assert r.json()["approved"] == 2
    assert [x["ok"] for x in r.json()["results"]] == [True, True, False]
    assert r.json()["results"][2]["status_code"] == 404
    for txn in ("txn-bulk1", "txn-bulk2"):
        assert client.get(f"/payments/{txn}", headers=BACKEND).json()["status"] == "settled"


def test_chargeback_label_is_stored_once(client, runtime):
    assert score(client, low_risk("cb")).json()["status"] == "settled"

    first = client.post(
        "/labels", json={"transaction_id": "txn-cb", "reason": "chargeback 10.4"}, headers=BACKEND
    )
    second = client.post("/labels", json={"transaction_id": "txn-cb"}, headers=BACKEND)

    assert first.status_code == 200, first.text
    assert first.json()["stored"] is True
    assert second.json() == {"transaction_id": "txn-cb", "stored": False, "duplicate": True}
    with runtime.engine.connect() as conn:
        rows = conn.execute(select(db.labels)).all()
    assert [(x.transaction_id, x.is_fraud, x.source, x.reason) for x in rows] == [
        ("txn-cb", True, "chargeback", "chargeback 10.4")
    ]


def test_label_for_an_unknown_payment_is_404(client, runtime):
    r = client.post("/labels", json={"transaction_id": "txn-never-scored"}, headers=BACKEND)

    assert r.status_code == 404
    assert counts(runtime.engine)["labels"] == 0


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/cases/4242", None),
        ("POST", "/cases/4242/claim", None),
        ("POST", "/cases/4242/decision", {"decision": "approve"}),
    ],
)
def test_unknown_case_is_404(client, method, path, body):
    r = client.request(method, path, json=body, headers=REVIEWER)

    assert r.status_code == 404, r.text
    assert "4242" in r.json()["error"]


def test_unknown_payment_status_is_404(client):
    assert client.get("/payments/txn-nope", headers=BACKEND).status_code == 404


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/cases/{id}/decision", {"decision": "maybe"}),
        ("/cases/{id}/decision", {"decision": "approve", "note": "x" * 2001}),
        ("/cases/{id}/decision", {"decision": "approve", "extra": 1}),
        ("/cases/bulk_approve", {"case_ids": []}),
        ("/cases/bulk_approve", {"case_ids": [1], "note": "x" * 2001}),
    ],
    ids=["bad-decision", "oversized-note", "extra-field", "empty-bulk", "bulk-oversized-note"],
)
def test_invalid_review_request_is_422_and_changes_nothing(client, runtime, path, body):
    case_id = held_case(client, "inv")
    before = counts(runtime.engine)

    r = client.post(path.format(id=case_id), json=body, headers=REVIEWER)

    assert r.status_code == 422, r.text
    assert counts(runtime.engine) == before
    assert client.get(f"/cases/{case_id}", headers=REVIEWER).json()["status"] == "open"


def test_label_export_as_csv_and_json_reads_back_as_training_labels(client, runtime, tmp_path):
    from training.feedback import read_labels, validate_labels

    assert score(client, low_risk("rt")).json()["status"] == "settled"
    assert client.post("/labels", json={"transaction_id": "txn-rt"}, headers=BACKEND).json()[
        "stored"
    ]
    as_csv = client.get("/labels/export?format=csv", headers=ADMIN)
    assert as_csv.status_code == 200
    assert as_csv.headers["content-type"].startswith("text/csv")
    as_json = client.get("/labels/export", headers=ADMIN)
    (tmp_path / "labels.csv").write_text(as_csv.text)
    (tmp_path / "labels.json").write_text(as_json.text)
    for name in ("labels.csv", "labels.json"):
        labels = validate_labels(read_labels(tmp_path / name), name)
        assert labels["transaction_id"].tolist() == ["txn-rt"], name
        assert labels["is_fraud"].tolist() == [1], name
    header, row = as_csv.text.splitlines()[:2]
    assert {"transaction_id", "is_fraud", "label_time"} <= set(header.split(","))
    assert row.endswith("Z"), "times are RFC 3339 UTC (Z)"
    assert "Z," in row
    assert client.get("/labels/export?format=xml", headers=ADMIN).status_code in (400, 422)
