"""The online flow for one payment: replay check -> fresh scoring -> durable write -> response.

The Scorer orders the three units and owns the lock; each unit is its own module and a test can
hold it alone: `replay.Replays` (replay and idempotency), `fresh.FreshScorer` (features, model,
policy, explanation) and `writer.DecisionWriter` (the durable write). Dependencies are passed in
(engine, model holder, online features, policy), so the same code runs under BentoML, in tests
with fakes, and in the benchmarks. Scoring is serialised by a lock: the online state must see
payments one at a time, in order, for its windows to equal the batch ones (across worker
processes too, when the state store offers `exclusive()`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from features.state import deferred_commits, exclusive, try_exclusive
from serving.core.auth import Principal
from serving.core.metrics import m
from serving.core.schemas import PaymentIn, now_utc
from serving.core.settings import Settings
from serving.scoring.fresh import FreshScorer
from serving.scoring.holder import ModelHolder
from serving.scoring.policy import PolicyConfig
from serving.scoring.replay import Replays, body_hash, payment_digest
from serving.scoring.writer import DecisionWriter


class _Todo(NamedTuple):
    """A payment to score fresh: its place in the request, contract record, key, body hash."""

    place: int
    record: dict[str, Any]
    key: str | None
    digest: str
    principal: Principal


def _legacy(payment: PaymentIn) -> Callable[[], str]:
    """The body's hash as keys stored it before payment_digest (asked only on a mismatch)."""
    return lambda: body_hash(payment.model_dump(mode="json"))


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
        self.clock = clock
        self._lock = threading.RLock()  # score_group falls back to score inside it
        self._depth = 0  # nesting of _serial (changed only by the thread holding the lock)
        self.replays = Replays(engine, clock)
        self.fresh = FreshScorer(holder, policy, settings, clock)
        self.writer = DecisionWriter(engine, lambda: self.settings.sla_minutes, clock)
        m()  # the metrics exist before the first payment: their creation is not in its deadline

    # settings and policy live with fresh scoring; swapping them here swaps them there
    @property
    def settings(self) -> Settings:
        return self.fresh.settings

    @settings.setter
    def settings(self, value: Settings) -> None:
        self.fresh.settings = value

    @property
    def policy(self) -> Callable[[], PolicyConfig]:
        return self.fresh.policy

    @policy.setter
    def policy(self, value: Callable[[], PolicyConfig]) -> None:
        self.fresh.policy = value

    @contextmanager
    def _serial(self) -> Iterator[None]:
        """One payment at a time, in one order: this process's threads, and the other worker
        processes when the online state is shared through a local log (SQLiteState)."""
        asked = time.perf_counter()
        with self._lock, exclusive(self.holder.store):
            self._depth += 1
            outer = self._depth == 1  # score_group's fallback to score nests: time it once
            held = time.perf_counter()
            try:
                yield
            finally:
                self._depth -= 1
                if outer:
                    metrics = m()
                    metrics.order_wait.observe(held - asked)
                    metrics.order_held.observe(time.perf_counter() - held)

    @contextmanager
    def try_serial(self) -> Iterator[bool]:
        """Yields whether the order lock (this process's and the other workers') was free and
        is now held by the caller, which then scores inside it (`_serial` nests): for the
        event loop, which must not block while another worker holds it."""
        asked = time.perf_counter()
        if not self._lock.acquire(blocking=False):
            yield False
            return
        try:
            with try_exclusive(self.holder.store) as held:
                if not held:
                    yield False
                    return
                self._depth += 1  # one hold, timed here with its catch-up; no wait: it was free
                try:
                    yield True
                finally:
                    self._depth -= 1
                    if self._depth == 0:
                        metrics = m()
                        metrics.order_wait.observe(0.0)
                        metrics.order_held.observe(time.perf_counter() - asked)
        finally:
            self._lock.release()

    # -- one payment ----------------------------------------------------------------------------
    def score(
        self,
        payment: PaymentIn,
        principal: Principal,
        idempotency_key: str | None = None,
        arrived: float | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body). 200 with the decision; 422 for a reused key with another body.
        `arrived` (perf_counter): when the request came in, if it waited before this call; the
        model deadline counts from it (a payment that waited its deadline out falls back)."""
        started = time.perf_counter() if arrived is None else arrived
        record = payment.contract()
        digest = payment_digest(record)
        legacy = _legacy(payment)
        with self._serial():
            replay = self.replays.replay(payment.transaction_id, idempotency_key, digest, legacy)
            if replay is not None:
                return replay
            body, prepared, online = self.fresh.one(record, started)
            try:
                self.writer.write([(record, body, idempotency_key, digest, 200, principal)])
            except IntegrityError:
                # Another replica decided this payment (or used this key) first: answer with it.
                replay = self.replays.replay(
                    payment.transaction_id, idempotency_key, digest, legacy
                )
                if replay is not None:
                    return replay
                raise
            online.update(prepared)
        m().latency.observe(time.perf_counter() - started)
        return 200, body

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
            known = self.replays.known([p.transaction_id for p in payments], keys)
            for i, payment in enumerate(payments):
                key = keys[i]
                record = payment.contract()
                digest = payment_digest(record)
                replay = None
                if payment.transaction_id in known or (key is not None and key in known):
                    replay = self.replays.replay(
                        payment.transaction_id, key, digest, _legacy(payment)
                    )
                if replay is not None:
                    status, body = replay
                    if status != 200:
                        return status, {**body, "index": i}
                    results[i] = body
                elif payment.transaction_id not in seen:
                    seen.add(payment.transaction_id)
                    todo.append(_Todo(i, record, key, digest, principal))
            if todo:
                bodies = self._score_fresh(todo, started)
                for item, body in zip(todo, bodies, strict=True):
                    results[item.place] = body
        m().latency.observe((time.perf_counter() - started) / max(len(payments), 1))
        return 200, [r for r in results if r is not None]

    def score_group(
        self, requests: list[tuple[PaymentIn, Principal, str | None]], arrived: float | None = None
    ) -> list[tuple[int, dict[str, Any]]]:
        """Score single-payment requests that arrived together (`/score` under load) as one
        group: one lock, one model call, one transaction. Each answers exactly as `score`
        would have, in arrival order: a repeat of an earlier request of the group (same
        transaction id or key) is answered from the stored decision, a reused key with another
        body gets 422. Only for a state store that rolls back a failed group (`deferred`):
        otherwise, or if the group's transaction fails on a conflict, one by one. `arrived`:
        the earliest arrival in the group; the model deadline of every payment counts from it."""
        m().group_size.observe(len(requests))
        if len(requests) == 1 or not getattr(self.holder.store, "transactional", False):
            return [self.score(p, who, key, arrived) for p, who, key in requests]
        started = time.perf_counter() if arrived is None else arrived
        out: list[tuple[int, dict[str, Any]] | None] = [None] * len(requests)
        records = [p.contract() for p, _, _ in requests]
        digests = [payment_digest(r) for r in records]
        with self._serial():
            ids = [p.transaction_id for p, _, _ in requests]
            known = self.replays.known(ids, [key for _, _, key in requests])
            todo: list[_Todo] = []
            later: list[int] = []  # repeats of a request earlier in the group
            taken: set[str] = set()
            for i, (payment, who, key) in enumerate(requests):
                if payment.transaction_id in taken or (key is not None and key in taken):
                    later.append(i)
                    continue
                if payment.transaction_id in known or (key is not None and key in known):
                    replay = self.replays.replay(
                        payment.transaction_id, key, digests[i], _legacy(payment)
                    )
                    if replay is not None:
                        out[i] = replay
                        continue
                taken.add(payment.transaction_id)
                if key is not None:
                    taken.add(key)
                todo.append(_Todo(i, records[i], key, digests[i], who))
            if todo:
                try:
                    bodies = self._score_fresh(todo, started)
                except IntegrityError:  # a replica decided one of them first: one by one
                    bodies = None
                if bodies is None:
                    for item in todo:
                        p, who, key = requests[item.place]
                        out[item.place] = self.score(p, who, key, arrived)
                else:
                    for item, body in zip(todo, bodies, strict=True):
                        out[item.place] = (200, body)
            for i in later:
                p, who, key = requests[i]
                out[i] = self.replays.replay(
                    p.transaction_id, key, digests[i], _legacy(p)
                ) or self.score(p, who, key, arrived)
        if todo:
            m().latency.observe((time.perf_counter() - started) / len(todo))
        return [r for r in out if r is not None]

    def _score_fresh(self, todo: list[_Todo], started: float) -> list[dict[str, Any]]:
        """Fresh scoring of the group, then one transaction for the decisions. The online
        state's events commit with it: if the decisions do not commit, a transactional store
        rolls the events back too."""
        loaded = self.holder.current
        with deferred_commits(loaded.online.store):
            bodies = self.fresh.many(loaded, [item.record for item in todo], started)
            self.writer.write(
                [
                    (item.record, body, item.key, item.digest, 200, item.principal)
                    for item, body in zip(todo, bodies, strict=True)
                ]
            )
        return bodies

    def close(self) -> None:
        self.fresh.close()
