"""Review operations through the in-process service: queues, locked queues, escalation, four
eyes (the payment stays held until a second key confirms), hold, and refused bodies."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from serving.store import db
from tests.serving.helpers import (
    ADMIN,
    BACKEND,
    BOB,
    REVIEWER,
    SUPERVISOR,
    counts,
    high_risk,
    running_service,
)


@pytest.fixture
def ops(service_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A service whose four-eyes amount (1,000) is below the high-risk payment's 2,500."""
    monkeypatch.setenv("RISKGATE_FOUR_EYES_AMOUNT", "1000")
    with running_service() as c:
        yield c


def held(client: Any, tag: str, **changes: Any) -> int:
    r = client.post("/score", json={**high_risk(tag), **changes}, headers=BACKEND)
    assert r.json()["decision"] == "review", r.text
    return int(r.json()["case_id"])


def status(client: Any, tag: str) -> str:
    return str(client.get(f"/payments/txn-{tag}", headers=BACKEND).json()["status"])


def test_four_eyes_keeps_the_payment_held_until_another_reviewer_confirms(ops):
    cid = held(ops, "4e")
    proposed = ops.post(f"/cases/{cid}/decision", json={"decision": "approve"}, headers=REVIEWER)
    assert proposed.status_code == 200, proposed.text
    assert proposed.json()["pending_confirmation"] is True
    assert status(ops, "4e") == "held_for_review"
    case = ops.get(f"/cases/{cid}", headers=REVIEWER).json()
    assert (case["pending_decision"], case["pending_by"]) == ("approve", "alice")

    own = ops.post(f"/cases/{cid}/confirm", json={}, headers=REVIEWER)
    assert own.status_code == 403, own.text
    assert status(ops, "4e") == "held_for_review"

    confirmed = ops.post(f"/cases/{cid}/confirm", json={"agree": True}, headers=BOB)
    assert confirmed.status_code == 200, confirmed.text
    assert status(ops, "4e") == "settled"
    audit = ops.get("/admin/audit", headers=ADMIN).json()["items"]
    actions = [(a["action"], a["actor"]) for a in audit if a["target"] == str(cid)]
    assert ("propose", "alice") in actions
    assert ("confirm", "bob") in actions


def test_an_escalated_case_goes_to_the_supervisors_queue(ops):
    cid = held(ops, "esc")
    r = ops.post(f"/cases/{cid}/escalate", json={"reason": "card on a watch list"}, headers=BOB)
    assert r.status_code == 200, r.text
    assert ops.post(f"/cases/{cid}/claim", headers=REVIEWER).status_code == 403
    assert ops.post("/queues/supervisors/next", headers=REVIEWER).status_code == 403
    nxt = ops.post("/queues/supervisors/next", headers=SUPERVISOR)
    assert nxt.status_code == 200
    assert nxt.json()["case_id"] == cid
    queues = {q["name"]: q for q in ops.get("/queues", headers=SUPERVISOR).json()["queues"]}
    assert queues["supervisors"]["open"] == 1


def test_a_locked_queue_set_by_a_supervisor_routes_and_hands_out_the_next_case(ops):
    body = {"sla_minutes": 5, "mode": "locked", "match": {"min_amount": 2000}}
    assert ops.put("/queues/big", json=body, headers=REVIEWER).status_code == 403
    r = ops.put("/queues/big", json=body, headers=SUPERVISOR)
    assert r.status_code == 200, r.text
    cid = held(ops, "big")
    listed = ops.get("/cases", params={"queue": "big"}, headers=REVIEWER).json()
    assert [c["id"] for c in listed["items"]] == [cid]
    assert listed["items"][0]["sla_seconds_left"] <= 5 * 60
    pick = ops.post(f"/cases/{cid}/claim", headers=REVIEWER)
    assert pick.status_code == 409
    assert "/queues/big/next" in pick.json()["error"]
    assert ops.post("/queues/big/next", headers=REVIEWER).json()["case_id"] == cid
    assert ops.post("/queues/big/next", headers=BOB).status_code == 404  # nothing else free


def test_a_hold_is_shown_as_a_paused_sla(ops):
    cid = held(ops, "hold")
    r = ops.post(f"/cases/{cid}/hold", json={"reason": "waiting for the customer"}, headers=BOB)
    assert r.status_code == 200, r.text
    case = ops.get(f"/cases/{cid}", headers=REVIEWER).json()
    assert case["on_hold"]
    assert case["sla_paused"]
    assert case["hold_reason"]
    assert ops.post(f"/cases/{cid}/resume", headers=BOB).json()["on_hold"] is False


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/queues/big", {"sla_minutes": 0}, "sla_minutes"),
        ("/queues/big", {"sla_minutes": 5, "mode": "closed"}, "mode"),
        ("/queues/big", {"sla_minutes": 5, "match": {"min_score": 120}}, "min_score"),
        ("/queues/Big!", {"sla_minutes": 5}, "name"),
        ("/queues/residual", {"sla_minutes": 5, "match": {"min_amount": 1}}, "match"),
    ],
)
def test_an_invalid_queue_is_refused_naming_the_field_and_nothing_changes(ops, path, body, field):
    before = ops.get("/queues", headers=SUPERVISOR).json()
    r = ops.put(path, json=body, headers=SUPERVISOR)
    assert r.status_code == 422, r.text
    assert field in r.text
    assert ops.get("/queues", headers=SUPERVISOR).json() == before


def test_reassign_needs_a_reason_and_a_known_reviewer(ops):
    from serving.http.service import http_app

    cid = held(ops, "re")
    engine = http_app.state.runtime.engine
    before = counts(engine)
    no_reason = ops.post(f"/cases/{cid}/reassign", json={"queue": "residual"}, headers=SUPERVISOR)
    assert no_reason.status_code == 422
    assert "reason" in no_reason.text
    unknown = {"reason": "skills", "reviewer": "mallory"}
    assert ops.post(f"/cases/{cid}/reassign", json=unknown, headers=SUPERVISOR).status_code == 422
    assert counts(engine) == before
    ok = ops.post(
        f"/cases/{cid}/reassign", json={"reason": "skills", "reviewer": "bob"}, headers=SUPERVISOR
    )
    assert ok.status_code == 200, ok.text
    with engine.connect() as conn:
        holder = conn.execute(select(db.cases.c.claimed_by).where(db.cases.c.id == cid)).scalar()
    assert holder == "bob"


def test_stats_judge_decisions_by_later_labels_and_the_export_lists_the_cases(ops):
    import csv
    import io

    approved, declined = held(ops, "st1", amount=500.0), held(ops, "st2", amount=600.0)
    body = {"decision": "approve"}
    assert ops.post(f"/cases/{approved}/decision", json=body, headers=REVIEWER).status_code == 200
    body = {"decision": "decline"}
    assert ops.post(f"/cases/{declined}/decision", json=body, headers=BOB).status_code == 200
    # later: the approved one is charged back, the declined one shown genuine
    for txn, fraud in (("txn-st1", True), ("txn-st2", False)):
        label = {"transaction_id": txn, "is_fraud": fraud}
        assert ops.post("/labels", json=label, headers=BACKEND).status_code == 200

    assert ops.get("/review/stats", headers=REVIEWER).status_code == 403
    r = ops.get("/review/stats", headers=SUPERVISOR)
    assert r.status_code == 200, r.text
    got = r.json()
    reviewers = {g["reviewer"]: g for g in got["by_reviewer"]}
    assert reviewers["alice"]["wrong"] == 1
    assert reviewers["alice"]["lost_amount"] == 500.0
    assert reviewers["bob"]["accuracy"] == 0.0
    [residual] = got["by_queue"]
    assert (residual["decided"], residual["approved_share"]) == (2, 0.5)
    assert len(got["outlook"]["hours"]) == 8

    export = ops.get("/cases/export", params={"format": "csv"}, headers=ADMIN)
    assert export.status_code == 200
    assert export.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert {(x["transaction_id"], x["decision"], x["decided_by"]) for x in rows} == {
        ("txn-st1", "approve", "alice"),
        ("txn-st2", "decline", "bob"),
    }
    assert "card" not in export.text.split("\n")[0]


def test_links_show_payments_sharing_card_or_device_and_say_a_linked_fraud(ops):
    from tests.serving.helpers import low_risk

    first = held(ops, "lk1")
    second = held(ops, "lk2", device_id="dev-lk1")  # same device as the first, other card
    same_card = {**low_risk("lk3"), "card_id": "card-lk2"}
    assert ops.post("/score", json=same_card, headers=BACKEND).json()["status"] == "settled"
    label = {"transaction_id": "txn-lk1", "is_fraud": True}
    assert ops.post("/labels", json=label, headers=BACKEND).json()["stored"] is True

    r = ops.get(f"/cases/{second}/links", headers=REVIEWER)
    assert r.status_code == 200, r.text
    got = r.json()
    by_txn = {x["transaction_id"]: x for x in got["links"]}
    assert by_txn["txn-lk1"]["shared"] == ["device"]
    assert by_txn["txn-lk1"]["case_id"] == first
    assert by_txn["txn-lk1"]["label"]["is_fraud"] is True
    assert by_txn["txn-lk3"]["shared"] == ["card"]
    assert by_txn["txn-lk3"]["status"] == "settled"
    assert got["counts"]["device"] == 1
    assert got["counts"]["card"] == 1
    assert got["confirmed_fraud"] == 1
    assert got["warning"] == (
        "1 linked payment is confirmed fraud: txn-lk1 (charged back) shares the device."
    )
    assert "card-lk" not in r.text  # the card token is not emitted


def test_bulk_decline_decides_each_case_and_audits_each(ops):
    from serving.http.service import http_app

    a, b = held(ops, "bd1", amount=300.0), held(ops, "bd2", amount=400.0)
    body = {"case_ids": [a, b, 99999], "decision": "decline_fraud", "note": "one attacker"}
    r = ops.post("/cases/bulk_decline", json=body, headers=REVIEWER)
    assert r.status_code == 200, r.text
    assert r.json()["declined"] == 2
    assert [x["ok"] for x in r.json()["results"]] == [True, True, False]
    assert status(ops, "bd1") == "declined"
    engine = http_app.state.runtime.engine
    with engine.connect() as conn:
        audited = conn.execute(
            select(db.audit_log.c.target).where(db.audit_log.c.action == "decide")
        ).all()
    assert sorted(int(x.target) for x in audited) == sorted([a, b])


@pytest.mark.parametrize("raw", ["score,shap-only", "score,score"])
def test_an_unknown_or_repeated_explanation_arm_is_refused_naming_the_setting(raw):
    from pydantic import ValidationError

    from serving.core.settings import Settings

    with pytest.raises(ValidationError, match="explain_arms"):
        Settings(explain_arms=raw)


def test_with_the_experiment_on_each_case_shows_its_arm(service_env, monkeypatch):
    monkeypatch.setenv("RISKGATE_EXPLAIN_ARMS", "score, score+facts+shap")
    with running_service() as client:
        cid = held(client, "arm")
        case = client.get(f"/cases/{cid}", headers=REVIEWER).json()
        assert case["explain_arm"] in ("score", "score+facts+shap")
        stats = client.get("/review/stats", headers=SUPERVISOR).json()
        assert stats["explain_arms"] == ["score", "score+facts+shap"]
