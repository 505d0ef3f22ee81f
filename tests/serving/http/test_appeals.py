"""A merchant contests a decline: once, as a case in the appeals queue; the reviewer's outcome
settles (overturned) or confirms (upheld) the payment, becomes a label and a webhook event, and
shows in the merchant's own list. In-process service, one per module."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.serving.helpers import (
    ADMIN,
    BACKEND,
    MERCHANT,
    MERCHANT_ID,
    REVIEWER,
    high_risk,
    low_risk,
    running_service,
    service_env_for,
)

OTHER = "merch_000342"
CARD = "4111 1111 1111 1111"


@pytest.fixture(scope="module")
def shop(tmp_path_factory, model_dir) -> Iterator[Any]:
    work = tmp_path_factory.mktemp("appeals")
    with (
        service_env_for(work, model_dir, RISKGATE_APPEALS_SLA_MINUTES="300"),
        running_service() as client,
    ):
        yield client


def engine() -> Any:
    from serving.http.service import http_app

    return http_app.state.runtime.engine


def declined_by_review(client: Any, tag: str, merchant: str = MERCHANT_ID) -> dict[str, Any]:
    r = client.post("/score", json={**high_risk(tag), "merchant_id": merchant}, headers=BACKEND)
    body = r.json()
    assert body["decision"] == "review", r.text
    d = client.post(
        f"/cases/{body['case_id']}/decision",
        json={"decision": "decline_fraud", "note": "stolen card"},
        headers=REVIEWER,
    )
    assert d.status_code == 200, d.text
    return body


def appeal(client: Any, txn: str, who: dict[str, str] = MERCHANT, **kw: Any) -> Any:
    return client.post(f"/payments/{txn}/appeal", headers=who, **kw)


def decide(client: Any, case_id: int, decision: str) -> Any:
    r = client.post(f"/cases/{case_id}/decision", json={"decision": decision}, headers=REVIEWER)
    assert r.status_code == 200, r.text
    return r.json()


def events(txn: str) -> list[dict[str, Any]]:
    from serving.store import db

    with engine().connect() as conn:
        rows = conn.execute(
            select(db.outbox.c.type, db.outbox.c.payload)
            .where(db.outbox.c.transaction_id == txn)
            .order_by(db.outbox.c.id)
        ).all()
    return [{"type": r.type, **r.payload} for r in rows]


def labels(client: Any, txn: str) -> dict[str, bool]:
    r = client.get("/labels/export", headers=ADMIN)
    return {x["source"]: x["is_fraud"] for x in r.json()["labels"] if x["transaction_id"] == txn}


def listed(client: Any, txn: str) -> dict[str, Any]:
    r = client.get(f"/merchants/{MERCHANT_ID}/payments", headers=MERCHANT)
    return next(x for x in r.json()["items"] if x["transaction_id"] == txn)


@pytest.fixture
def online_labels(monkeypatch) -> list[tuple[str, bool]]:
    """The labels the online state is given (transaction id, is_fraud), in order."""
    from serving.http.service import http_app

    online = http_app.state.runtime.holder.current.online
    seen: list[tuple[str, bool]] = []
    real = online.apply_label

    def spy(transaction_id: str, is_fraud: bool, label_time: Any) -> bool:
        seen.append((transaction_id, is_fraud))
        return real(transaction_id, is_fraud, label_time)

    monkeypatch.setattr(online, "apply_label", spy)
    return seen


def test_an_overturned_appeal_settles_the_payment_and_labels_it_genuine(shop, online_labels):
    txn = declined_by_review(shop, "ap-over")["transaction_id"]
    r = appeal(shop, txn, json={"note": f"customer confirmed, card {CARD}"})
    assert r.status_code == 201, r.text
    case_id = r.json()["case_id"]
    assert r.json()["appeal"]["status"] == "open"
    case = shop.get(f"/cases/{case_id}", headers=REVIEWER).json()
    assert case["status"] == "open"
    assert case["queue"] == "appeals"
    assert (
        shop.get(f"/merchants/{MERCHANT_ID}/summary", headers=MERCHANT).json()["appeals_open"] >= 1
    )
    assert listed(shop, txn)["appeal"]["status"] == "open"

    out = decide(shop, case_id, "approve")
    assert out["status"] == "settled"
    item = listed(shop, txn)
    assert item["status"] == "settled"
    assert item["appeal"]["status"] == "overturned"
    assert item["appeal"]["decided_at"]
    assert labels(shop, txn) == {"review": True, "appeal": False}
    # the online state took the review's fraud label, then the appeal's genuine one
    assert [x for x in online_labels if x[0] == txn] == [(txn, True), (txn, False)]
    types = [e["type"] for e in events(txn)]
    assert types[-2:] == ["appeal.opened", "appeal.overturned"]
    # the merchant's note kept its words, never the card number
    from serving.store import db

    with engine().connect() as conn:
        note = conn.execute(
            select(db.appeals.c.note).where(db.appeals.c.transaction_id == txn)
        ).scalar_one()
        audit = conn.execute(
            select(db.audit_log.c.detail).where(
                db.audit_log.c.action == "appeal", db.audit_log.c.target == txn
            )
        ).scalar_one()
    assert "customer confirmed" in note
    assert "4111" not in note
    assert "4111" not in str(audit)
    assert "4111" not in str(events(txn))


def test_an_upheld_appeal_keeps_the_decline_and_labels_fraud(shop, online_labels):
    """Declined at scoring (a block list): the appeal opens a new case."""
    p = {**low_risk("ap-block"), "merchant_id": MERCHANT_ID}
    put = shop.put(
        "/admin/policy?force=true", json={"block": {"card_id": [p["card_id"]]}}, headers=ADMIN
    )
    assert put.status_code == 200, put.text
    try:
        scored = shop.post("/score", json=p, headers=BACKEND).json()
    finally:
        shop.put("/admin/policy?force=true", json={}, headers=ADMIN)
    assert scored["status"] == "declined"
    assert scored.get("case_id") is None
    txn = p["transaction_id"]
    r = appeal(shop, txn, who=BACKEND, json={"note": "merchant says genuine"})
    assert r.status_code == 201, r.text
    out = decide(shop, r.json()["case_id"], "decline")
    assert out["status"] == "declined"
    item = listed(shop, txn)
    assert item["status"] == "declined"
    assert item["appeal"]["status"] == "upheld"
    assert labels(shop, txn) == {"appeal": True}
    assert [x for x in online_labels if x[0] == txn] == [(txn, True)]
    assert [e["type"] for e in events(txn)][-2:] == ["appeal.opened", "appeal.upheld"]


def test_only_a_declined_payment_and_only_once(shop):
    settled = {**low_risk("ap-ok"), "merchant_id": MERCHANT_ID}
    assert shop.post("/score", json=settled, headers=BACKEND).status_code == 200
    r = appeal(shop, settled["transaction_id"], json={})
    assert r.status_code == 409
    assert "settled" in r.json()["error"]
    txn = declined_by_review(shop, "ap-once")["transaction_id"]
    assert appeal(shop, txn, json={"note": "a"}).status_code == 201
    again = appeal(shop, txn, who=BACKEND, json={"note": "b"})
    assert again.status_code == 409
    assert "already appealed" in again.json()["error"]


def test_racing_appeals_open_exactly_one_case(shop):
    from serving.store import db

    txn = declined_by_review(shop, "ap-race")["transaction_id"]
    with ThreadPoolExecutor(8) as pool:
        codes = list(
            pool.map(lambda i: appeal(shop, txn, json={"note": f"n{i}"}).status_code, range(8))
        )
    assert sorted(codes) == [201] + [409] * 7
    with engine().connect() as conn:
        n = conn.execute(
            select(func.count()).where(db.appeals.c.transaction_id == txn)
        ).scalar_one()
        opened = conn.execute(
            select(func.count()).where(
                db.outbox.c.transaction_id == txn, db.outbox.c.type == "appeal.opened"
            )
        ).scalar_one()
    assert (n, opened) == (1, 1)


def test_the_idempotency_key_replays_the_first_answer(shop):
    txn = declined_by_review(shop, "ap-idem")["transaction_id"]
    h = {**MERCHANT, "Idempotency-Key": "appeal-ap-idem-1"}
    first = appeal(shop, txn, who=h, json={"note": "x"})
    second = appeal(shop, txn, who=h, json={"note": "x"})
    assert first.status_code == second.status_code == 201
    assert second.json()["case_id"] == first.json()["case_id"]
    assert second.json()["replayed"]
    other = appeal(shop, txn, who=h, json={"note": "y"})
    assert other.status_code == 422
    assert "Idempotency-Key" in other.json()["error"]


@pytest.fixture(scope="module")
def other_txn(shop) -> str:
    """A declined payment of another merchant."""
    return declined_by_review(shop, "ap-other", merchant=OTHER)["transaction_id"]


@pytest.mark.parametrize("spelling", ["same", "upper", "unknown", "trailing-space"])
def test_another_merchants_payment_is_404_like_an_unknown_one(shop, other_txn, spelling):
    path_id = {
        "same": other_txn,
        "upper": other_txn.upper(),
        "unknown": "txn-no-such-payment",
        "trailing-space": f"{other_txn}%20",
    }[spelling]
    r = appeal(shop, path_id, json={"note": "mine?"})
    assert r.status_code == 404
    assert r.json() == {"error": "not found"}
    assert events(other_txn)[-1]["type"] != "appeal.opened"  # nothing opened
