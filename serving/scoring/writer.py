"""The durable write: the decisions of one or many payments, with their review cases,
idempotency keys and audit rows, in ONE transaction, before anybody is answered."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Column, Engine, bindparam, insert

from serving.core.auth import Principal
from serving.core.schemas import rfc3339
from serving.scoring import facts as payment_facts
from serving.store import db
from serving.store.driver import DriverInsert, cursor, run

# (contract record, response body, idempotency key, body hash, HTTP status, who asked)
WriteItem = tuple[dict[str, Any], dict[str, Any], str | None, str, int, Principal]

_INS_CASE = insert(db.cases)
_UPD_RESPONSE = (
    db.decisions.update()
    .where(db.decisions.c.transaction_id == bindparam("t_id"))
    .values(response=bindparam("response"))
)


def mask_card(card_id: str) -> str:
    """Show at most the first six and last four characters."""
    if len(card_id) <= 10:
        return card_id[:2] + "*" * max(len(card_id) - 4, 1) + card_id[-2:]
    return card_id[:6] + "*" * (len(card_id) - 10) + card_id[-4:]


def masked_payment(payment: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: (rfc3339(v) if isinstance(v, datetime) else v) for k, v in payment.items()}
    out["card_id"] = mask_card(str(payment["card_id"]))
    return out


def _decision_row(
    record: dict[str, Any],
    body: dict[str, Any],
    created_at: Any,
    status_at: Any,
    payment_time: Any,
    response: Any,
) -> dict[str, Any]:
    """The times and the response already through their columns' processors."""
    return {
        "transaction_id": record["transaction_id"],
        "created_at": created_at,
        "payment_time": payment_time,
        "decision": body["decision"],
        "source": body["decision_source"],
        "status": body["status"],
        "status_at": status_at,
        "probability": body["probability"],
        "score": body["score"],
        "model_version": body["model_version"],
        "amount": record["amount"],
        "currency": record["currency"],
        "merchant_id": record["merchant_id"],
        "card_id": record["card_id"],
        "response": response,
    }


_DECISION_READY = frozenset({"created_at", "status_at", "payment_time", "response"})
_KEY_READY = frozenset({"created_at", "response"})
_AUDIT_READY = frozenset({"at", "detail"})
_FACTS_READY = frozenset({"payment_time", "thresholds"})


def _same_type(a: Column[Any], b: Column[Any]) -> bool:
    """Two columns whose values go through the same bind processor (same type, same zone)."""
    ta, tb = a.type, b.type
    return type(ta) is type(tb) and getattr(ta, "timezone", None) == getattr(tb, "timezone", None)


class DecisionWriter:
    """Writes decided payments; a held one gets its review case (SLA from `sla_minutes`)."""

    def __init__(
        self, engine: Engine, sla_minutes: Callable[[], float], clock: Callable[[], datetime]
    ) -> None:
        self.engine = engine
        self.sla_minutes = sla_minutes
        self.clock = clock
        # the inserts every payment makes go to the driver directly (serving/store/driver.py)
        self._ins_decision = DriverInsert(db.decisions, engine.dialect)
        self._ins_key = DriverInsert(db.idempotency, engine.dialect)
        self._ins_audit = DriverInsert(db.audit_log, engine.dialect)
        self._ins_facts = DriverInsert(db.payment_facts, engine.dialect)
        # a held payment's case and its answer's case id: on the driver where it gives the new
        # row's id (SQLite), else one prebuilt SQLAlchemy insert (not a new statement per case)
        self._fast_cases = engine.dialect.name == "sqlite"
        self._ins_case = DriverInsert(db.cases, engine.dialect)
        upd = _UPD_RESPONSE.compile(dialect=engine.dialect)
        self._upd_sql = upd.string
        self._upd_order = tuple(upd.positiontup or ())
        self._facts = payment_facts.FactsWriter(self._ins_facts)
        # a response stored in decisions and under its key: encoded once when both columns
        # are of one type (the same processor), else once per table
        self._one_response = _same_type(db.decisions.c.response, db.idempotency.c.response)
        # and a payment time stored with its decision and its facts
        self._one_time = _same_type(db.decisions.c.payment_time, db.payment_facts.c.payment_time)

    def write(self, items: list[WriteItem]) -> None:
        """Decisions (+ cases, keys, audit) of one or many payments in ONE transaction, with
        one multi-row INSERT per table (a case needs its id back, so cases go one by one).
        Pops the bodies' private `_features` / `_factors` and sets `case_id` on held ones.
        What rows share (the time, a response in two tables, the thresholds in force, the
        audit detail) goes through its column's bind processor once (DriverInsert.process)."""
        now = self.clock()
        dec, key_ins, aud, fac = self._ins_decision, self._ins_key, self._ins_audit, self._ins_facts
        dec_now = dec.process("created_at", now)
        dec_status_at = dec.process("status_at", now)
        key_now = key_ins.process("created_at", now)
        aud_now = aud.process("at", now)
        details: dict[tuple[str, str], Any] = {}
        doc_of: dict[int, Any] = {}  # id(thresholds doc) -> processed: one doc for most rows
        decisions, audits, reviewed, facts = [], [], [], []
        responses: list[Any] = []
        for record, body, _key, _digest, _status, principal in items:
            features = body.pop("_features")
            factors = body.pop("_factors")
            frow = self._facts.row(record, body, features)  # pops the other private keys
            response = dec.process("response", body)
            responses.append(response)
            payment_time = dec.process("payment_time", record["timestamp"])
            decisions.append(
                _decision_row(record, body, dec_now, dec_status_at, payment_time, response)
            )
            frow["payment_time"] = (
                payment_time if self._one_time else fac.process("payment_time", record["timestamp"])
            )
            doc = frow["thresholds"]
            ready_doc = doc_of.get(id(doc))
            if ready_doc is None:
                ready_doc = doc_of[id(doc)] = fac.process("thresholds", doc)
            frow["thresholds"] = ready_doc
            facts.append(frow)
            if body["decision"] == "review":
                reviewed.append((record, body, features, factors))
            pair = (body["decision"], body["decision_source"])
            detail = details.get(pair)
            if detail is None:
                detail = details[pair] = aud.process(
                    "detail", {"decision": pair[0], "source": pair[1]}
                )
            audits.append(
                {
                    "at": aud_now,
                    "actor": principal.name,
                    "role": principal.role,
                    "key_id": principal.key_id,
                    "action": "score",
                    "target": record["transaction_id"],
                    "detail": detail,
                }
            )
        with self.engine.begin() as conn:
            dec.execute(conn, decisions, _DECISION_READY)
            new_sets = self._facts.write(conn, facts, now, _FACTS_READY)
            held: set[int] = set()
            for record, body, features, factors in reviewed:
                body["case_id"] = self._open_case(conn, now, record, body, features, factors)
                self._set_response(conn, record["transaction_id"], body)
                held.add(id(body))
            keys = [
                {
                    "key": key,
                    "endpoint": "score",
                    "body_hash": digest,
                    "status_code": status,
                    # as answered: a case id set above is stored too
                    "response": response
                    if self._one_response and id(body) not in held
                    else key_ins.process("response", body),
                    "created_at": key_now,
                }
                for (_record, body, key, digest, status, _who), response in zip(
                    items, responses, strict=True
                )
                if key is not None
            ]
            key_ins.execute(conn, keys, _KEY_READY)
            aud.execute(conn, audits, _AUDIT_READY)
        self._facts.committed(new_sets)

    def _open_case(
        self,
        conn: Any,
        now: datetime,
        record: dict[str, Any],
        body: dict[str, Any],
        features: dict[str, float],
        factors: list[dict[str, Any]],
    ) -> int:
        """The review case of a held payment, with what the reviewer needs; its id."""
        p = body["probability"]
        risk = p if p is not None else 0.05  # unknown risk (fallback): a modest prior
        row = {
            "transaction_id": record["transaction_id"],
            "created_at": now,
            "sla_due": now + timedelta(minutes=self.sla_minutes()),
            "status": "open",
            "priority": risk * float(record["amount"]),
            "amount": record["amount"],
            "probability": p,
            "score": body["score"],
            "merchant_id": record["merchant_id"],
            "version": 0,
            "payment": masked_payment(record),
            "features": {k: (None if v != v else v) for k, v in features.items()},
            "factors": factors,
            "reasons": body["reasons"],
        }
        if self._fast_cases:
            return self._ins_case.insert_one(conn, row)
        result = conn.execute(_INS_CASE, row)
        assert result.inserted_primary_key is not None
        return int(result.inserted_primary_key[0])

    def _set_response(self, conn: Any, transaction_id: str, body: dict[str, Any]) -> None:
        """The stored answer of a held payment, now with its case id."""
        if not self._fast_cases:
            conn.execute(_UPD_RESPONSE, {"t_id": transaction_id, "response": body})
            return
        values = {"t_id": transaction_id, "response": self._ins_decision.process("response", body)}
        with cursor(conn) as cur:
            run(conn, cur, self._upd_sql, tuple(values[k] for k in self._upd_order), many=False)
