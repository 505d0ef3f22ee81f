"""The backend learns of decisions without polling: outbox -> webhook, at least once, same id.

A tiny HTTP receiver on 127.0.0.1 records what arrives. "Down" is a port nobody listens on.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from serving.core.auth import KeyRing
from serving.core.schemas import now_utc
from serving.review import queue
from serving.review.webhooks import deliver_due, sign, signed_headers
from serving.store import db
from tests.servers import Server, free_port
from tests.serving.helpers import ADMIN, BACKEND, KEY_SPEC, REVIEWER, high_risk, open_case

DEADLINE_S = 30.0


class Receiver:
    """Records every POST (headers and JSON body); answers 200."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.events: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.raw: list[bytes] = []  # the bodies as sent (a signature covers the bytes)
        received, raw = self.events, self.raw

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                raw.append(body)
                received.append((dict(self.headers), json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _wait_for(predicate: Any, seconds: float = DEADLINE_S) -> bool:
    deadline = time.monotonic() + seconds
    for _ in range(int(seconds / 0.1) + 1):  # bounded in count and time
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)  # poll interval while waiting for a delivery
    return bool(predicate())


# -- the delivery loop on its own ----------------------------------------------------------


@pytest.fixture
def decided(tmp_path: Path) -> Any:
    """A database holding one decided case, so one event waits in the outbox."""
    engine = db.make_engine(f"sqlite:///{tmp_path / 'rg.db'}")
    db.create_schema(engine)
    reasons = [{"text": "IP country NG differs from billing country DE"}]
    open_case(engine, "wh-1", amount=120.0, priority=60.0, reasons=reasons)
    now = now_utc()
    who = KeyRing.parse(KEY_SPEC).authenticate(REVIEWER["Authorization"])
    result = queue.decide(engine, 1, "approve", "fine", who, now)
    return engine, result


def test_receiver_down_then_up_gets_the_event_once_with_the_same_id(decided) -> None:
    engine, result = decided
    port = free_port()  # nobody listens here yet
    url = f"http://127.0.0.1:{port}/hooks"
    t0 = now_utc()
    with httpx.Client(timeout=2.0) as client:
        assert deliver_due(engine, url, client, now=lambda: t0) == 0
        with engine.connect() as conn:
            row = conn.execute(select(db.outbox)).one()
        assert row.attempts == 1
        assert row.delivered_at is None
        assert row.last_error
        # still inside the backoff: nothing is retried
        assert deliver_due(engine, url, client, now=lambda: t0) == 0

        later = t0 + timedelta(seconds=60)
        with Receiver(port) as receiver:
            assert deliver_due(engine, url, client, now=lambda: later) == 1
            assert deliver_due(engine, url, client, now=lambda: later + timedelta(hours=1)) == 0
    assert len(receiver.events) == 1
    headers, body = receiver.events[0]
    assert body["event_id"] == result["event_id"] == headers["X-Riskgate-Event-Id"]
    assert body["type"] == "payment.settled"
    assert body["transaction_id"] == "wh-1"
    assert body["reviewer"] == "alice"
    assert body["reasons"] == ["IP country NG differs from billing country DE"]


def test_signed_events_carry_an_hmac_of_the_body(decided) -> None:
    engine, _ = decided
    port = free_port()
    with Receiver(port) as receiver, httpx.Client(timeout=2.0) as client:
        assert deliver_due(engine, f"http://127.0.0.1:{port}/", client, secret="s3cret") == 1
    headers, body = receiver.events[0]
    raw = json.dumps(body, sort_keys=True).encode()
    assert headers["X-Riskgate-Signature"] == "sha256=" + sign("s3cret", raw)


# The Standard Webhooks specification's published test vector (its libraries test against it).
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID, VECTOR_TS, VECTOR_BODY = (
    "msg_p5jXN8AQM9LWM0D4loKWxJek",
    1614265330,
    b'{"test": 2432232314}',
)
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_the_standard_webhooks_signature_matches_the_specifications_test_vector() -> None:
    at = datetime.fromtimestamp(VECTOR_TS, tz=UTC)
    headers = signed_headers(VECTOR_SECRET, VECTOR_ID, VECTOR_BODY, at)
    assert headers["webhook-id"] == VECTOR_ID
    assert headers["webhook-timestamp"] == str(VECTOR_TS)
    assert headers["webhook-signature"] == VECTOR_SIGNATURE


def test_a_delivery_verifies_with_the_standard_webhooks_library(decided) -> None:
    """What a backend does: standardwebhooks.Webhook(secret).verify(raw body, headers)."""
    from standardwebhooks import Webhook
    from standardwebhooks.webhooks import WebhookVerificationError

    engine, result = decided
    port = free_port()
    with Receiver(port) as receiver, httpx.Client(timeout=2.0) as client:
        assert deliver_due(engine, f"http://127.0.0.1:{port}/", client, secret=VECTOR_SECRET) == 1
    headers, raw = receiver.events[0][0], receiver.raw[0]
    assert headers["webhook-id"] == result["event_id"] == headers["X-Riskgate-Event-Id"]
    verified = Webhook(VECTOR_SECRET).verify(raw, headers)
    assert verified["event_id"] == result["event_id"]
    assert headers["X-Riskgate-Signature"] == "sha256=" + sign(VECTOR_SECRET, raw)  # legacy
    with pytest.raises(WebhookVerificationError):
        Webhook(VECTOR_SECRET).verify(raw.replace(b"settled", b"declined"), headers)
    with pytest.raises(WebhookVerificationError):  # another endpoint's secret
        Webhook("whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY").verify(raw, headers)


def test_a_secret_without_the_whsec_prefix_signs_with_its_bytes(decided) -> None:
    from standardwebhooks import Webhook

    engine, _ = decided
    port = free_port()
    with Receiver(port) as receiver, httpx.Client(timeout=2.0) as client:
        assert deliver_due(engine, f"http://127.0.0.1:{port}/", client, secret="s3cret") == 1
    assert Webhook(b"s3cret").verify(receiver.raw[0], receiver.events[0][0])


# -- the lifecycle on a real server ---------------------------------------------------------


@pytest.fixture(scope="module")
def hook_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def server(
    model_dir: Path, tmp_path_factory: pytest.TempPathFactory, hook_port: int
) -> Iterator[str]:
    work = tmp_path_factory.mktemp("webhook-server")
    env = {
        "RISKGATE_API_KEYS": KEY_SPEC,
        "RISKGATE_MODEL_DIR": str(model_dir),
        "RISKGATE_DB_URL": f"sqlite:///{work / 'riskgate.db'}",
        "RISKGATE_STATE_PATH": str(work / "state.db"),
        "RISKGATE_MODEL_DEADLINE_MS": "5000",
        "RISKGATE_WEBHOOK_URL": f"http://127.0.0.1:{hook_port}/hooks",
    }
    srv = Server(free_port(), env, work, work / "server.log")
    srv.start()
    try:
        srv.wait_ready()
        yield srv.base
    finally:
        srv.stop()


@pytest.mark.slow
def test_lifecycle_score_case_claim_decide_settle_webhook_label(
    server: str, hook_port: int
) -> None:
    with httpx.Client(base_url=server, timeout=30.0) as http:
        scored = http.post("/score", json=high_risk("life-1"), headers=BACKEND).json()
        assert scored["decision"] == "review", scored
        case_id = scored["case_id"]
        assert (
            http.get(f"/payments/{scored['transaction_id']}", headers=BACKEND).json()["status"]
            == "held_for_review"
        )
        assert http.post(f"/cases/{case_id}/claim", headers=REVIEWER).status_code == 200
        # the receiver is down while the decision is made: the event waits in the outbox
        decided = http.post(
            f"/cases/{case_id}/decision", json={"decision": "approve"}, headers=REVIEWER
        )
        assert decided.status_code == 200, decided.text
        event_id = decided.json()["event_id"]
        status = http.get(f"/payments/{scored['transaction_id']}", headers=BACKEND).json()
        assert status["status"] == "settled"

        def outbox_row() -> dict[str, Any]:
            items = http.get("/admin/outbox", headers=ADMIN).json()["items"]
            return next(i for i in items if i["event_id"] == event_id)

        assert _wait_for(lambda: outbox_row()["attempts"] >= 1)
        assert outbox_row()["delivered_at"] is None

        with Receiver(hook_port) as receiver:  # the receiver comes back
            assert _wait_for(lambda: outbox_row()["delivered_at"] is not None)
            assert _wait_for(lambda: len(receiver.events) >= 1)
        ids = [body["event_id"] for _, body in receiver.events]
        assert ids == [event_id]
        labels = http.get("/labels/export", headers=ADMIN).json()["labels"]
        mine = [x for x in labels if x["transaction_id"] == scored["transaction_id"]]
        assert [(x["source"], x["is_fraud"]) for x in mine] == [("review", False)]
        metrics = http.get("/metrics").text
        assert "riskgate_review_decisions_total" in metrics
        assert "riskgate_time_to_decision_seconds" in metrics
        assert "riskgate_queue_depth" in metrics


def test_outbox_holds_one_event_per_decision(decided) -> None:
    engine, _ = decided
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(db.outbox)).scalar_one() == 1
