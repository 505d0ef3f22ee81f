"""Payments, keys and small helpers shared by the serving tests."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from serving.store import db

BACKEND_KEY = "backend-key-0123456789abcdef"
REVIEWER_KEY = "reviewer-key-0123456789abcdef"
ADMIN_KEY = "admin-key-0123456789abcdef"
BOB_KEY = "reviewer-bob-key-0123456789"
SUPERVISOR_KEY = "supervisor-key-0123456789abcdef"
MERCHANT_KEY = "merchant-key-0123456789abcdef"
MERCHANT_ID = "merch_000341"
KEY_SPEC = (
    f"backend:{BACKEND_KEY},reviewer:alice:{REVIEWER_KEY},reviewer:bob:{BOB_KEY},"
    f"supervisor:carol:{SUPERVISOR_KEY},admin:{ADMIN_KEY},merchant:{MERCHANT_ID}:{MERCHANT_KEY}"
)

BACKEND = {"Authorization": f"Bearer {BACKEND_KEY}"}
REVIEWER = {"Authorization": f"Bearer {REVIEWER_KEY}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
BOB = {"Authorization": f"Bearer {BOB_KEY}"}
SUPERVISOR = {"Authorization": f"Bearer {SUPERVISOR_KEY}"}
MERCHANT = {"Authorization": f"Bearer {MERCHANT_KEY}"}

# A Luhn-valid test PAN (Visa's documented test number).
TEST_PAN = "4111 1111 1111 1111"


def low_risk(tag: str = "low") -> dict[str, Any]:
    """A plain payment: small amount, countries agree, 3-D Secure passed, midday on a weekday.

    Every identifier carries `tag`, so in a fresh online state each payment has no history
    and its features (hence its probability) equal the reference computed in conftest.
    """
    return {
        "transaction_id": f"txn-{tag}",
        "timestamp": "2024-03-05T12:00:00Z",
        "card_id": f"card-{tag}",
        "customer_id": f"cust-{tag}",
        "merchant_id": f"merch-{tag}",
        "amount": 12.5,
        "currency": "EUR",
        "billing_country": "DE",
        "ip_country": "DE",
        "device_id": f"dev-{tag}",
        "ip_hash": f"ip-{tag}",
        "channel": "online",
        "auth_result": "passed",
    }


def high_risk(tag: str = "high") -> dict[str, Any]:
    """Large amount at night, IP and shipping countries differ from billing, no 3-D Secure,
    account one day old and credentials changed ten minutes before the payment."""
    return {
        **low_risk(tag),
        "timestamp": "2024-03-06T03:00:00Z",
        "amount": 2500.0,
        "ip_country": "BR",
        "shipping_country": "NG",
        "auth_result": "not_attempted",
        "account_created_at": "2024-03-05T00:00:00Z",
        "credential_changed_at": "2024-03-06T02:50:00Z",
    }


def card_sequence(tag: str, n: int, step_seconds: float) -> list[dict[str, Any]]:
    """One card's `n` high-risk payments, `step_seconds` apart, each a review (so its case
    keeps the features): velocity features grow along it."""
    from datetime import datetime, timedelta

    start = datetime.fromisoformat("2024-03-06T03:00:00+00:00")
    out = []
    for i in range(n):
        p = high_risk(tag)
        p["transaction_id"] = f"txn-{tag}-{i}"
        p["timestamp"] = (start + timedelta(seconds=step_seconds * i)).isoformat()
        p["amount"] = 2500.0 + 100 * i
        out.append(p)
    return out


COUNTED = ("decisions", "cases", "idempotency_keys", "audit_log", "labels", "outbox")


def counts(engine: Engine) -> dict[str, int]:
    """Row count per table (what a refused request must leave unchanged)."""
    out = {}
    with engine.connect() as conn:
        for name in COUNTED:
            table = db.metadata.tables[name]
            out[name] = int(conn.execute(select(func.count()).select_from(table)).scalar_one())
    return out


@contextmanager
def running_service() -> Iterator[Any]:
    """The BentoML service in-process, configured from the current RISKGATE_* environment.

    The TestClient's context manager runs the service's start-up (Riskgate.__init__ builds the
    runtime) and shutdown (closes the database, state and model pool).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # starlette's "httpx -> httpx2" notice on import
        from starlette.testclient import TestClient

    from serving.http.service import Riskgate

    _forget_bentoml_http_metrics()
    try:
        with TestClient(Riskgate.to_asgi()) as c:
            yield c
    finally:
        _forget_bentoml_http_metrics()


def _forget_bentoml_http_metrics() -> None:
    """Unregister BentoML's per-app HTTP metrics from the process-wide Prometheus registry.

    Each ASGI app BentoML builds registers `bentoml_service_*` collectors when it first serves a
    request; a second app in the same process would fail with DuplicateTimeseries. A real server
    builds one app per process, so only an in-process test suite needs this. (riskgate_* metrics
    are created once per process by serving.core.metrics.m() and stay.)
    """
    from prometheus_client import REGISTRY

    for collector, names in list(REGISTRY._collector_to_names.items()):
        if any(name.startswith("bentoml_") for name in names):
            REGISTRY.unregister(collector)


def open_case(
    engine: Engine, transaction_id: str, amount: float, priority: float, reasons: list[Any]
) -> None:
    """Seed one held payment and its open review case directly (queue-level tests)."""
    from datetime import timedelta

    from serving.core.schemas import now_utc
    from serving.store import db

    now = now_utc()
    with engine.begin() as conn:
        conn.execute(
            db.decisions.insert(),
            {
                "transaction_id": transaction_id,
                "created_at": now,
                "payment_time": now,
                "decision": "review",
                "source": "model",
                "status": "held_for_review",
                "status_at": now,
                "amount": amount,
                "currency": "EUR",
                "merchant_id": "m1",
                "card_id": "card_1",
                "response": {},
            },
        )
        conn.execute(
            db.cases.insert(),
            {
                "transaction_id": transaction_id,
                "created_at": now,
                "sla_due": now + timedelta(minutes=15),
                "status": "open",
                "priority": priority,
                "amount": amount,
                "merchant_id": "m1",
                "version": 0,
                "payment": {},
                "features": {},
                "factors": [],
                "reasons": reasons,
            },
        )


@contextmanager
def service_env_for(work: Path, model_dir: Path | str, **extra: str) -> Iterator[dict[str, str]]:
    """RISKGATE_* for a module's own in-process service (its database and state under `work`,
    nothing inherited from the shell), set for the block and restored after it. `extra` adds
    or overrides settings: `service_env_for(work, model, RISKGATE_TEAM_SHIFTS="00-00:2")`."""
    import pytest

    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith("RISKGATE_"):
                mp.delenv(name)
        env = {
            "RISKGATE_API_KEYS": KEY_SPEC,
            "RISKGATE_MODEL_DIR": str(model_dir),
            "RISKGATE_DB_URL": f"sqlite:///{work / 'riskgate.db'}",
            "RISKGATE_STATE_PATH": str(work / "state.db"),
            "RISKGATE_MODEL_DEADLINE_MS": "5000",
            **extra,
        }
        for name, value in env.items():
            mp.setenv(name, value)
        yield env
