"""The online flow for one payment: features -> model -> policy -> durable write -> response.

Dependencies are passed in (engine, model holder, online features, policy), so the same code runs
under BentoML, in tests with fakes, and in the benchmarks. Scoring is serialised by a lock: the
online state must see payments one at a time, in order, for its windows to equal the batch ones
(across worker processes too, when the state store offers `exclusive()`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Engine, bindparam, insert, select
from sqlalchemy.exc import IntegrityError

from features.online import OnlineFeatures, prepare
from features.registry import feature_set_version
from features.registry import select as select_features
from features.state import StateStore, deferred_commits, exclusive
from serving.core.auth import Principal
from serving.core.metrics import m
from serving.core.schemas import PaymentIn, now_utc
from serving.core.settings import Settings
from serving.scoring import explain
from serving.scoring.capacity import CapacityConfig, CapacityGovernor
from serving.scoring.policy import PolicyConfig, decide
from serving.store import db
from training import drift
from training.model import RiskModel

DRIFT_WINDOW = 5_000  # recent payments the score drift looks at
DRIFT_EVERY = 500  # recompute it every this many payments
# Statements built once: per request only the parameters change (SQLAlchemy's compiled cache
# then skips re-coercing the expression on the hot path).
_SEL_IDEMPOTENCY = select(db.idempotency).where(db.idempotency.c.key == bindparam("k"))
_SEL_STATUS = select(db.decisions.c.status).where(db.decisions.c.transaction_id == bindparam("t"))
_SEL_DECISION = select(db.decisions.c.response, db.decisions.c.status).where(
    db.decisions.c.transaction_id == bindparam("t")
)
_INS_DECISION = db.decisions.insert()
_INS_IDEMPOTENCY = db.idempotency.insert()
_INS_AUDIT = db.audit_log.insert()
_UPD_RESPONSE = (
    db.decisions.update()
    .where(db.decisions.c.transaction_id == bindparam("t_id"))
    .values(response=bindparam("response"))
)


def model_contrib(loaded: Loaded, X: np.ndarray) -> list[float]:
    """SHAP values of one row (without the bias term)."""
    assert loaded.model is not None
    return [float(v) for v in loaded.model.contributions(X)[0, :-1]]


STATUS_OF = {"approve": "settled", "review": "held_for_review", "decline": "declined"}


class ArtifactMismatchError(RuntimeError):
    """The model was trained on feature definitions this code does not have."""


def check_artifact(model: RiskModel) -> None:
    """Refuse an artifact whose feature list or definitions differ from the code's."""
    try:
        declared = select_features(model.features)
    except KeyError as exc:
        raise ArtifactMismatchError(str(exc)) from None
    expected = feature_set_version(declared)
    if expected != model.feature_set_version:
        raise ArtifactMismatchError(
            f"model feature-set version {model.feature_set_version} differs from this code's "
            f"{expected} for the same feature names: retrain with this code"
        )


@dataclass(frozen=True)
class Loaded:
    """A model with the online executor for its feature list (swapped together on reload)."""

    model: RiskModel | None
    version: str | None
    online: OnlineFeatures


class ModelHolder:
    """The serving model; `swap` replaces it atomically (in-flight requests keep theirs)."""

    def __init__(self, store: StateStore, model: RiskModel | None, version: str | None) -> None:
        self._store = store
        self._loaded = self._build(model, version)

    def _build(self, model: RiskModel | None, version: str | None) -> Loaded:
        if model is None:
            from features.registry import FEATURES

            return Loaded(None, None, OnlineFeatures(self._store, FEATURES))
        check_artifact(model)
        return Loaded(model, version, OnlineFeatures(self._store, select_features(model.features)))

    @property
    def current(self) -> Loaded:
        return self._loaded

    @property
    def store(self) -> StateStore:
        return self._store

    def swap(self, model: RiskModel, version: str) -> None:
        self._loaded = self._build(model, version)


def body_hash(payload: Mapping[str, Any]) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def mask_card(card_id: str) -> str:
    """Show at most the first six and last four characters."""
    if len(card_id) <= 10:
        return card_id[:2] + "*" * max(len(card_id) - 4, 1) + card_id[-2:]
    return card_id[:6] + "*" * (len(card_id) - 10) + card_id[-4:]


def masked_payment(payment: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in payment.items()}
    out["card_id"] = mask_card(str(payment["card_id"]))
    return out


@dataclass(frozen=True)
class _Todo:
    """A payment to score fresh: its place in the request, contract record, key, body hash."""

    index: int
    record: dict[str, Any]
    key: str | None
    digest: str
    principal: Principal


def _decision_row(record: dict[str, Any], body: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {
        "transaction_id": record["transaction_id"],
        "created_at": now,
        "payment_time": record["timestamp"],
        "decision": body["decision"],
        "source": body["decision_source"],
        "status": body["status"],
        "status_at": now,
        "probability": body["probability"],
        "score": body["score"],
        "model_version": body["model_version"],
        "amount": record["amount"],
        "currency": record["currency"],
        "merchant_id": record["merchant_id"],
        "card_id": record["card_id"],
        "response": body,
    }


class Scorer:
    """Scores payments and records every decision before answering."""

    def __init__(
        self,
        engine: Engine,
        holder: ModelHolder,
        policy: Callable[[], PolicyConfig],
        settings: Settings,
        clock: Callable[[], datetime] = now_utc,
    ) -> None:
        self.engine = engine
        self.holder = holder
        self.policy = policy
        self.settings = settings
        self.clock = clock
        self._lock = threading.RLock()  # score_group falls back to score inside it
        self._recent: deque[float] = deque(maxlen=DRIFT_WINDOW)
        self._since_drift = 0
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="model")
        self.governor = CapacityGovernor(
            CapacityConfig(
                enabled=settings.capacity_enabled,
                # each worker process sees about 1/workers of the payments
                reviews_per_hour=settings.capacity_reviews_per_hour / settings.workers,
                max_review_threshold=settings.capacity_max_review_probability,
            )
        )

    @contextmanager
    def _serial(self) -> Iterator[None]:
        """One payment at a time, in one order: this process's threads, and the other worker
        processes when the online state is shared through a local log (SQLiteState)."""
        with self._lock, exclusive(self.holder.store):
            yield

    # -- the model call, under its deadline ---------------------------------------------------
    def _call_model(self, model: RiskModel, X: np.ndarray, deadline: float) -> np.ndarray:
        """predict_proba under a deadline. A call that misses it is cancelled if it has not
        started, so a slow spell does not leave a backlog ahead of the next payments."""
        if deadline <= 0:
            return model.predict_proba(X)
        future = self._pool.submit(model.predict_proba, X)
        try:
            return future.result(timeout=deadline)
        except FutureTimeout:
            future.cancel()
            raise

    def _predict(self, model: RiskModel, X: np.ndarray) -> tuple[float | None, str | None]:
        try:
            p = float(self._call_model(model, X, self.settings.model_deadline_ms / 1000.0)[0])
        except FutureTimeout:
            return None, "deadline"
        except Exception:  # a broken model must not stop payments: the fallback decides
            return None, "error"
        if not np.isfinite(p):
            return None, "error"
        return p, None

    # -- one payment ----------------------------------------------------------------------------
    def score(
        self, payment: PaymentIn, principal: Principal, idempotency_key: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body). 200 with the decision; 422 for a reused key with another body."""
        started = time.perf_counter()
        record = payment.contract()
        digest = body_hash(payment.model_dump(mode="json"))
        with self._serial():
            replay = self._replay(payment.transaction_id, idempotency_key, digest, principal)
            if replay is not None:
                return replay
            status, body, prepared, online = self._decide(record, started)
            try:
                self._write_many([(record, body, idempotency_key, digest, status, principal)])
            except IntegrityError:
                # Another replica decided this payment (or used this key) first: answer with it.
                replay = self._replay(payment.transaction_id, idempotency_key, digest, principal)
                if replay is not None:
                    return replay
                raise
            online.update(prepared)
        m().latency.observe(time.perf_counter() - started)
        return status, body

    def _replay(
        self, transaction_id: str, key: str | None, digest: str, principal: Principal
    ) -> tuple[int, dict[str, Any]] | None:
        with self.engine.connect() as conn:
            if key is not None:
                row = conn.execute(_SEL_IDEMPOTENCY, {"k": key}).first()
                if row is not None:
                    if row.body_hash != digest:
                        return 422, {
                            "error": "Idempotency-Key was already used with a different body",
                            "detail": [{"loc": ["header", "Idempotency-Key"], "msg": "reused"}],
                        }
                    m().replays.inc()
                    body = {**row.response, "replayed": True}
                    status = conn.execute(
                        _SEL_STATUS, {"t": row.response.get("transaction_id")}
                    ).scalar()
                    if status is not None:  # the payment may have been decided since
                        body["status"] = status
                    return int(row.status_code), body
            row = conn.execute(_SEL_DECISION, {"t": transaction_id}).first()
        if row is None:
            return None
        m().replays.inc()
        body = {**row.response, "replayed": True, "status": row.status}
        if key is not None:
            try:
                with self.engine.begin() as conn:
                    conn.execute(
                        _INS_IDEMPOTENCY,
                        {
                            "key": key,
                            "endpoint": "score",
                            "body_hash": digest,
                            "status_code": 200,
                            "response": row.response,
                            "created_at": self.clock(),
                        },
                    )
            except IntegrityError:
                pass
        return 200, body

    def _decide(
        self, record: dict[str, Any], started: float
    ) -> tuple[int, dict[str, Any], dict[str, Any], OnlineFeatures]:
        loaded = self.holder.current
        prepared = prepare(record)
        t_feat = time.perf_counter()
        values = loaded.online.compute(prepared)
        m().stage.labels(stage="features").observe(time.perf_counter() - t_feat)
        model = loaded.model
        probability: float | None = None
        cause: str | None = "no_model"
        X = np.ascontiguousarray(values.reshape(1, -1), dtype=np.float64)
        if model is not None:
            t_model = time.perf_counter()
            probability, cause = self._predict(model, X)
            m().stage.labels(stage="model").observe(time.perf_counter() - t_model)
        body = self._finish(
            record, loaded, values, probability, cause, lambda: model_contrib(loaded, X), started
        )
        return 200, body, prepared, loaded.online

    def _finish(
        self,
        record: dict[str, Any],
        loaded: Loaded,
        values: np.ndarray,
        probability: float | None,
        cause: str | None,
        contributions: Callable[[], list[float]],
        started: float,
    ) -> dict[str, Any]:
        """Capacity band, policy, explanation and the response body for one scored payment."""
        names = loaded.online.names
        features = dict(zip(names, (float(v) for v in values), strict=True))
        model = loaded.model
        if model is not None and probability is not None:
            self._watch_drift(model, probability)
        config = self.policy()
        thresholds = model.thresholds if model else None
        adjusted = False
        if thresholds is not None and probability is not None:
            now_s = self.clock().timestamp()
            ceiling = (
                self.settings.capacity_max_review_saving
                if thresholds.review_by == "saving"
                else self.settings.capacity_max_review_probability
            )
            band = self.governor.band(now_s, thresholds.review, thresholds.decline, ceiling)
            self.governor.observe(
                now_s, float(thresholds.review_score(probability, float(record["amount"])))
            )
            adjusted = band.adjusted
            if adjusted:
                thresholds = replace(thresholds, review=band.review)
                m().capacity_adjusted.inc()
            m().review_threshold.set(band.review)
        outcome = decide(record, features, probability, thresholds, config)
        if outcome.source == "fallback":
            m().fallbacks.labels(cause=cause or "unknown").inc()
        m().decisions.labels(decision=outcome.decision, source=outcome.source).inc()

        reasons: list[dict[str, Any]] = []
        factors: list[dict[str, Any]] = []
        if model is not None and probability is not None and outcome.decision != "approve":
            t_exp = time.perf_counter()
            contrib = contributions()
            vals = values.tolist()
            factors = explain.all_factors(names, vals, contrib, record)
            reasons = explain.reasons(names, vals, contrib, record, top=self.settings.explain_top)
            m().stage.labels(stage="explain").observe(time.perf_counter() - t_exp)
        if not reasons and outcome.rules:
            reasons = [
                {"feature": "rule", "value": None, "contribution": 0.0, "text": r}
                for r in outcome.rules
            ]
        if outcome.source == "fallback":
            reasons.append(
                {
                    "feature": "fallback",
                    "value": None,
                    "contribution": 0.0,
                    "text": f"model unavailable ({cause}): fallback rules decided",
                }
            )
        body: dict[str, Any] = {
            "transaction_id": record["transaction_id"],
            "decision": outcome.decision,
            "decision_source": outcome.source,
            "probability": probability,
            "score": None if probability is None else min(99, int(probability * 100)),
            "reasons": reasons,
            "rules": list(outcome.rules),
            "model_version": loaded.version,
            "case_id": None,
            "status": STATUS_OF[outcome.decision],
            "replayed": False,
            "review_threshold": thresholds.review if thresholds else None,
            "review_by": thresholds.review_by if thresholds else None,
            "capacity_adjusted": adjusted,
            "elapsed_ms": 0.0,
            "_features": features,
            "_factors": factors,
        }
        body["elapsed_ms"] = round((time.perf_counter() - started) * 1000, 3)
        return body

    # -- many payments: one model call, one transaction ----------------------------------------
    def score_many(
        self, payments: list[PaymentIn], principal: Principal, idempotency_key: str | None = None
    ) -> tuple[int, list[dict[str, Any]] | dict[str, Any]]:
        """Score a batch in order: features one by one (each sees the ones before), then one
        model call for the batch and one database transaction (a group commit) for all the
        decisions. Replays and per-item keys (`KEY#i`) behave as for single payments."""
        started = time.perf_counter()
        with self._serial():
            results: list[dict[str, Any] | None] = [None] * len(payments)
            todo = []
            seen: set[str] = set()
            keys: list[str | None] = (
                [None] * len(payments)
                if idempotency_key is None
                else [f"{idempotency_key}#{i}" for i in range(len(payments))]
            )
            known = self._known([p.transaction_id for p in payments], keys)
            for i, payment in enumerate(payments):
                key = keys[i]
                digest = body_hash(payment.model_dump(mode="json"))
                replay = None
                if payment.transaction_id in known or (key is not None and key in known):
                    replay = self._replay(payment.transaction_id, key, digest, principal)
                if replay is not None:
                    status, body = replay
                    if status != 200:
                        return status, {**body, "index": i}
                    results[i] = body
                elif payment.transaction_id not in seen:
                    seen.add(payment.transaction_id)
                    todo.append(_Todo(i, payment.contract(), key, digest, principal))
            if todo:
                bodies = self._score_fresh(todo, started)
                for item, body in zip(todo, bodies, strict=True):
                    results[item.index] = body
        m().latency.observe((time.perf_counter() - started) / max(len(payments), 1))
        return 200, [r for r in results if r is not None]

    def score_group(
        self, requests: list[tuple[PaymentIn, Principal, str | None]]
    ) -> list[tuple[int, dict[str, Any]]]:
        """Score single-payment requests that arrived together (`/score` under load) as one
        group: one lock, one model call, one transaction. Each answers exactly as `score`
        would have, in arrival order: a repeat of an earlier request of the group (same
        transaction id or key) is answered from the stored decision, a reused key with another
        body gets 422. Only for a state store that rolls back a failed group (`deferred`):
        otherwise, or if the group's transaction fails on a conflict, one by one."""
        m().group_size.observe(len(requests))
        if len(requests) == 1 or not getattr(self.holder.store, "transactional", False):
            return [self.score(p, who, key) for p, who, key in requests]
        started = time.perf_counter()
        out: list[tuple[int, dict[str, Any]] | None] = [None] * len(requests)
        digests = [body_hash(p.model_dump(mode="json")) for p, _, _ in requests]
        with self._serial():
            ids = [p.transaction_id for p, _, _ in requests]
            known = self._known(ids, [key for _, _, key in requests])
            todo: list[_Todo] = []
            later: list[int] = []  # repeats of a request earlier in the group
            taken: set[str] = set()
            for i, (payment, who, key) in enumerate(requests):
                if payment.transaction_id in taken or (key is not None and key in taken):
                    later.append(i)
                    continue
                if payment.transaction_id in known or (key is not None and key in known):
                    replay = self._replay(payment.transaction_id, key, digests[i], who)
                    if replay is not None:
                        out[i] = replay
                        continue
                taken.add(payment.transaction_id)
                if key is not None:
                    taken.add(key)
                todo.append(_Todo(i, payment.contract(), key, digests[i], who))
            if todo:
                try:
                    bodies = self._score_fresh(todo, started)
                except IntegrityError:  # a replica decided one of them first: one by one
                    bodies = None
                if bodies is None:
                    for item in todo:
                        p, who, key = requests[item.index]
                        out[item.index] = self.score(p, who, key)
                else:
                    for item, body in zip(todo, bodies, strict=True):
                        out[item.index] = (200, body)
            for i in later:
                p, who, key = requests[i]
                out[i] = self._replay(p.transaction_id, key, digests[i], who) or self.score(
                    p, who, key
                )
        if todo:
            m().latency.observe((time.perf_counter() - started) / len(todo))
        return [r for r in out if r is not None]

    def _known(self, ids: list[str], keys: list[str | None]) -> set[str]:
        """Which of these transaction ids and idempotency keys the database already holds:
        two queries for all of them instead of two per payment."""
        found: set[str] = set()
        wanted = [k for k in keys if k is not None]
        with self.engine.connect() as conn:
            for chunk in range(0, len(ids), 500):
                found.update(
                    conn.execute(
                        select(db.decisions.c.transaction_id).where(
                            db.decisions.c.transaction_id.in_(ids[chunk : chunk + 500])
                        )
                    ).scalars()
                )
            for chunk in range(0, len(wanted), 500):
                found.update(
                    conn.execute(
                        select(db.idempotency.c.key).where(
                            db.idempotency.c.key.in_(wanted[chunk : chunk + 500])
                        )
                    ).scalars()
                )
        return found

    def _score_fresh(self, todo: list[_Todo], started: float) -> list[dict[str, Any]]:
        """Features in order (each payment sees the ones before it), one model call, then one
        transaction for the decisions. The online state's events commit with it: if the
        decisions do not commit, a transactional store rolls the events back too."""
        loaded = self.holder.current
        rows = []
        with deferred_commits(loaded.online.store):
            for item in todo:
                prepared = prepare(item.record)
                rows.append(loaded.online.compute(prepared))
                loaded.online.update(prepared)  # later payments of the group must see this one
            X = np.ascontiguousarray(np.vstack(rows), dtype=np.float64)
            probs: list[float | None] = [None] * len(todo)
            cause: str | None = "no_model"
            if loaded.model is not None:
                probs, cause = self._predict_many(loaded.model, X)
            bodies = []
            for j, item in enumerate(todo):
                body = self._finish(
                    item.record,
                    loaded,
                    rows[j],
                    probs[j],
                    cause if probs[j] is None else None,
                    functools.partial(model_contrib, loaded, X[j : j + 1]),
                    started,
                )
                bodies.append(body)
            self._write_many(
                [
                    (item.record, body, item.key, item.digest, 200, item.principal)
                    for item, body in zip(todo, bodies, strict=True)
                ]
            )
        return bodies

    def _predict_many(
        self, model: RiskModel, X: np.ndarray
    ) -> tuple[list[float | None], str | None]:
        deadline = self.settings.model_deadline_ms / 1000.0 * max(1.0, len(X) / 100)
        try:
            p = self._call_model(model, X, deadline)
        except FutureTimeout:
            return [None] * len(X), "deadline"
        except Exception:  # the fallback decides the whole batch
            return [None] * len(X), "error"
        return [float(v) if np.isfinite(v) else None for v in p], None

    def _write_many(
        self,
        items: list[tuple[dict[str, Any], dict[str, Any], str | None, str, int, Principal]],
    ) -> None:
        """Decisions (+ cases, keys, audit) of one or many payments in ONE transaction, with
        one multi-row INSERT per table (a case needs its id back, so cases go one by one)."""
        now = self.clock()
        decisions, keys, audits, reviewed = [], [], [], []
        for record, body, key, digest, status, principal in items:
            features = body.pop("_features")
            factors = body.pop("_factors")
            decisions.append(_decision_row(record, body, now))
            if body["decision"] == "review":
                reviewed.append((record, body, features, factors))
            if key is not None:
                keys.append(
                    {
                        "key": key,
                        "endpoint": "score",
                        "body_hash": digest,
                        "status_code": status,
                        "response": body,  # the same dict: a case id set below is stored too
                        "created_at": now,
                    }
                )
            audits.append(
                {
                    "at": now,
                    "actor": principal.name,
                    "role": principal.role,
                    "key_id": principal.key_id,
                    "action": "score",
                    "target": record["transaction_id"],
                    "detail": {"decision": body["decision"], "source": body["decision_source"]},
                }
            )
        with self.engine.begin() as conn:
            conn.execute(_INS_DECISION, decisions)
            for record, body, features, factors in reviewed:
                body["case_id"] = self._open_case(conn, now, record, body, features, factors)
                conn.execute(_UPD_RESPONSE, {"t_id": record["transaction_id"], "response": body})
            if keys:
                conn.execute(_INS_IDEMPOTENCY, keys)
            conn.execute(_INS_AUDIT, audits)

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
        result = conn.execute(
            insert(db.cases).values(
                transaction_id=record["transaction_id"],
                created_at=now,
                sla_due=now + timedelta(minutes=self.settings.sla_minutes),
                status="open",
                priority=risk * float(record["amount"]),
                amount=record["amount"],
                probability=p,
                score=body["score"],
                merchant_id=record["merchant_id"],
                version=0,
                payment=masked_payment(record),
                features={k: (None if v != v else v) for k, v in features.items()},
                factors=factors,
                reasons=body["reasons"],
            )
        )
        assert result.inserted_primary_key is not None
        return int(result.inserted_primary_key[0])

    def _watch_drift(self, model: RiskModel, probability: float) -> None:
        """Score PSI over the recent payments against the training profile, every DRIFT_EVERY."""
        self._recent.append(probability)
        self._since_drift += 1
        if self._since_drift < DRIFT_EVERY or model.profile is None:
            return
        self._since_drift = 0
        if drift.SCORE in model.profile:
            value = drift.psi(model.profile[drift.SCORE], np.fromiter(self._recent, np.float64))
            m().score_psi.set(value)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
