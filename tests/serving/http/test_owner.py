"""The scoring owner (serving/http/owner.py): two runtimes on one database and state log, as
two worker processes are, with a real Unix socket between them in one event loop.

- the first to start is the owner; the other forwards, and its payments are decided there
  (the owner's state holds them, in one order with the owner's own);
- answers through the forwarder equal the owner's, replays included (a reused key with another
  body is refused there too);
- the forwarder's copy of the state follows the owner's off the scoring path;
- when the owner stops listening, the forwarder takes the owner lock and scores itself, and a
  payment already decided is answered from the stored decision, not decided again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from serving.core.auth import KeyRing
from serving.core.schemas import PaymentIn
from serving.core.settings import Settings
from serving.http.owner import Forwarder, OwnerLock, decode_payment, encode_request, owner_paths
from serving.http.runtime import build
from serving.store import db
from tests.serving.helpers import card_sequence, high_risk, low_risk

KEYS = "backend:backend-key-0123456789,admin:admin-key-0123456789"


def settings(tmp_path: Path, model_dir: Path, **overrides: Any) -> Settings:
    fields: dict[str, Any] = {
        "model_dir": str(model_dir),
        "db_url": f"sqlite:///{tmp_path}/rg.db",
        "state_path": str(tmp_path / "state.db"),
        "api_keys": KEYS,
        "workers": 2,
        "config_poll_seconds": 3600,
    }
    return Settings(**{**fields, **overrides})


@pytest.fixture
def pair(tmp_path: Path, model_dir: Path) -> Iterator[tuple[Any, Any]]:
    s = settings(tmp_path, model_dir)
    a = build(s, KeyRing.parse(KEYS))
    b = build(s, KeyRing.parse(KEYS))
    try:
        yield a, b
    finally:
        b.close()
        a.close()


def who(rt: Any) -> Any:
    return rt.keys.authenticate("Bearer backend-key-0123456789")


def decided(rt: Any) -> int:
    with rt.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(db.decisions)).scalar_one())


def test_the_first_worker_owns_scoring_and_the_other_forwards_to_it(
    pair, tmp_path: Path, model_dir: Path
) -> None:
    a, b = pair
    seq = [PaymentIn.model_validate(p) for p in card_sequence("own", 6, 30.0)]

    async def run() -> list[tuple[int, dict[str, Any]]]:
        await a.start_owner()
        await b.start_owner()
        assert a.owner_server is not None
        assert not isinstance(a.groups, Forwarder)
        assert isinstance(b.groups, Forwarder)
        out = []
        for i, p in enumerate(seq):  # alternately through the two workers, in order
            rt = a if i % 2 == 0 else b
            out.append(await rt.groups.score(p, who(rt), f"key-{i}"))
        return out

    answers = asyncio.run(run())
    assert [s for s, _ in answers] == [200] * len(seq)
    assert a.forwarded() == (3, 0)
    assert b.forwarded() == (0, 3)
    assert all(a.state.knows(p.transaction_id) for p in seq)  # the owner's state holds all
    assert decided(a) == len(seq)
    # one order: the card's velocity features (and so the probabilities) are those of the
    # same sequence scored by one worker alone
    alone = build(settings(tmp_path / "alone", model_dir, workers=1), KeyRing.parse(KEYS))
    try:
        single = [alone.scorer.score(p, who(alone), None)[1] for p in seq]
    finally:
        alone.close()
    assert [body["probability"] for _, body in answers] == [x["probability"] for x in single]


def test_answers_and_replays_through_the_forwarder_are_the_owners(pair) -> None:
    a, b = pair
    low = PaymentIn.model_validate(low_risk("fwd-low"))
    high = PaymentIn.model_validate(high_risk("fwd-high"))
    other = PaymentIn.model_validate(low_risk("fwd-other"))

    async def run() -> dict[str, Any]:
        await a.start_owner()
        await b.start_owner()
        first = await b.groups.score(low, who(b), "k-low")
        again = await b.groups.score(low, who(b), "k-low")  # the same request, replayed
        reused = await b.groups.score(other, who(b), "k-low")  # the key, another body
        held = await b.groups.score(high, who(b), None)
        on_owner = await a.groups.score(high, who(a), None)  # the owner answers it the same
        return {"first": first, "again": again, "reused": reused, "held": held, "a": on_owner}

    r = asyncio.run(run())
    assert r["first"][0] == 200
    assert r["again"][0] == 200
    assert r["again"][1]["replayed"] is True
    assert r["again"][1]["decision"] == r["first"][1]["decision"]
    assert r["reused"][0] == 422
    assert r["held"][0] == 200
    assert r["held"][1]["decision"] == "review"
    assert r["held"][1]["case_id"] is not None
    assert r["a"][1]["case_id"] == r["held"][1]["case_id"]  # one case, not two
    assert decided(a) == 2  # low and high, each once


def test_the_forwarders_state_follows_the_owners_off_the_scoring_path(pair) -> None:
    a, b = pair
    p = PaymentIn.model_validate(low_risk("follow"))

    async def run() -> None:
        await a.start_owner()
        await b.start_owner()
        await b.groups.score(p, who(b), None)

    asyncio.run(run())
    assert not b.state.knows(p.transaction_id)  # forwarded: scored on the owner only
    b.state.follow()
    assert b.state.knows(p.transaction_id)


def test_when_the_owner_stops_the_forwarder_takes_over_and_decides_nothing_twice(
    pair,
) -> None:
    a, b = pair
    p1 = PaymentIn.model_validate(low_risk("over-1"))
    p2 = PaymentIn.model_validate(low_risk("over-2"))

    async def run() -> tuple[Any, Any]:
        await a.start_owner()
        await b.start_owner()
        first = await b.groups.score(p1, who(b), "over-key")
        a.owner_server.close_now()  # the owner stops listening (it is going away)
        a.owner_lock.release()
        await asyncio.sleep(0)  # the forwarder's connection sees the close
        replay = await b.groups.score(p1, who(b), "over-key")  # scored by b now: a replay
        fresh = await b.groups.score(p2, who(b), None)
        return first, (replay, fresh)

    first, (replay, fresh) = asyncio.run(run())
    assert isinstance(b.groups, Forwarder)
    assert b.groups.owner_here
    assert b.owner_server is not None  # b serves the others now
    assert replay[0] == 200
    assert replay[1]["replayed"] is True
    assert replay[1]["decision"] == first[1]["decision"]
    assert fresh[0] == 200
    assert decided(a) == 2
    assert b.state.knows(p2.transaction_id)


def test_a_single_worker_or_the_setting_off_has_no_owner(tmp_path: Path, model_dir: Path) -> None:
    one = build(settings(tmp_path / "one", model_dir, workers=1), KeyRing.parse(KEYS))
    off = build(settings(tmp_path / "off", model_dir, score_owner=False), KeyRing.parse(KEYS))
    try:
        for rt in (one, off):
            asyncio.run(rt.start_owner())
            assert rt.owner_lock is None
            assert rt.owner_server is None
            assert not isinstance(rt.groups, Forwarder)
    finally:
        one.close()
        off.close()


def test_the_owner_lock_is_held_by_one_process_at_a_time(tmp_path: Path) -> None:
    lock_path, _ = owner_paths(tmp_path / "state.db")
    first, second = OwnerLock(lock_path), OwnerLock(lock_path)
    assert first.try_take()
    assert first.held
    assert not second.try_take()  # flock: another open file description is refused
    first.release()
    assert second.try_take()
    second.release()


def test_a_forwarded_payment_arrives_as_it_was_validated() -> None:
    """The contract record, and so the idempotency digest, is the forwarder's exactly."""
    import orjson

    from serving.scoring.replay import payment_digest

    p = PaymentIn.model_validate(low_risk("exact"))
    frame = encode_request(7, p, _principal(), "k")
    doc = orjson.loads(frame[4:])
    assert doc["i"] == 7
    assert doc["k"] == "k"
    again = decode_payment(doc["p"])
    assert again.contract() == p.contract()
    assert payment_digest(again.contract()) == payment_digest(p.contract())


def _principal() -> Any:
    from serving.core.auth import Principal

    return Principal(role="backend", name="backend-1", key_id="abc")
