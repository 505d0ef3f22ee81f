"""The backtest's storage on PostgreSQL: what each payment was decided on is written (feature
set once, vectors as bytes) and read back raw (JSON and timestamps as the driver gives them)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from serving.scoring import backtest, facts
from serving.scoring.policy import parse_config
from serving.store import db


def test_payment_facts_round_trip_and_replay_on_postgres(pg_engine):
    writer = facts.FactsWriter()
    t0 = datetime(2024, 3, 1, 1, 30, tzinfo=UTC)
    rows, decisions = [], []
    for i in range(3):
        at = t0 + timedelta(hours=i)
        record = {
            "transaction_id": f"pg-bt-{i}",
            "timestamp": at,
            "card_id": f"card-{i}",
            "amount": 100.0 * (i + 1),
            "ip_country": "FR" if i == 2 else "DE",
            "account_created_at": at - timedelta(days=10),
        }
        thresholds = {"review": 0.5, "decline": 2.0, "review_by": "probability",
                      "chargeback_fee": 0.0, "review_cost": 0.0, "hold_cost": 0.0}  # fmt: skip
        rows.append(
            writer.row(record, {"_thresholds": thresholds}, {"card_count_1h": float(i), "f2": 0.5})
        )
        decisions.append(
            {
                "transaction_id": record["transaction_id"],
                "created_at": at,
                "payment_time": at,
                "decision": "approve",
                "source": "model",
                "status": "settled",
                "status_at": at,
                "probability": 0.1,
                "amount": record["amount"],
                "currency": "EUR",
                "merchant_id": "m",
                "card_id": record["card_id"],
                "response": {},
            }
        )
    with pg_engine.begin() as conn:
        conn.execute(db.decisions.insert(), decisions)
        writer.committed(writer.write(conn, rows, t0))
    stored = facts.load(pg_engine, t0, t0 + timedelta(days=1))
    assert stored.transaction_id == ["pg-bt-0", "pg-bt-1", "pg-bt-2"]
    assert stored.payment_time.tolist() == [(t0 + timedelta(hours=i)).timestamp() for i in range(3)]
    assert stored.column("card_count_1h").tolist() == [0.0, 1.0, 2.0]
    assert stored.payments[2]["ip_country"] == "FR"
    rules = [
        ("fr", "ip_country", "==", "FR", "review"),
        ("late", "hour(timestamp)", "==", 2, "review"),
        ("young", "days_since(account_created_at)", "<", 5, "decline"),
        ("velocity", "card_count_1h", ">=", 2, "review"),
    ]
    keys = ("name", "field", "op", "value", "action")
    policy = parse_config({"rules": [dict(zip(keys, r, strict=True)) for r in rules]})
    assert backtest.replay_decisions(stored, policy) == ["approve", "review", "review"]
