"""Finding 8 (issue 15): the online state and the decision store can disagree. With a fresh
decision database beside an existing state file (the default `.riskgate/state.db` is relative
to the working directory, the database URL may point elsewhere), the same payments were applied
to the state again: velocity features doubled and ordinary payments went to review.

State updates are now idempotent per transaction id (tests/features/test_online_state.py,
tests/scale/test_redis_state.py), and both stores are stamped with one deployment id at the first
start: stores whose stamps show different deployments are refused, by `riskgate serve` (one line,
exit 2) and by a worker started some other way.
"""

from __future__ import annotations

import argparse
import os
import uuid
from pathlib import Path

import pytest

from features.state import PaymentEvent, SQLiteState
from serving.core.settings import Settings
from serving.http.deployment import (
    DeploymentMismatchError,
    Seen,
    check_before_serve,
    db_seen,
    problem,
)
from serving.store import db


def event(txn: str) -> PaymentEvent:
    return PaymentEvent(txn, 1_704_067_200 * 10**9, 1250, "c1", "u1", "m1", None, None, None, 0, 0)


def settings_for(work: Path, db_name: str = "riskgate.db", state: str = "state.db") -> Settings:
    return Settings(
        db_url=f"sqlite:///{work / db_name}", state_path=str(work / state), api_keys=None
    )


def with_payment(path: Path, txn: str = "t-1") -> None:
    store = SQLiteState(path)
    store.record_payment(event(txn))
    store.close()


def stamp_of(settings: Settings) -> str | None:
    engine = db.make_engine(settings.db_url)
    try:
        return db_seen(engine).stamp
    finally:
        engine.dispose()


A, B = "a" * 32, "b" * 32


@pytest.mark.parametrize(
    ("decisions", "state", "refused"),
    [
        (Seen(None, False), Seen(None, False), None),  # first start
        (Seen(A, True), Seen(A, True), None),  # the same deployment
        (Seen(A, True), Seen(None, False), None),  # a new, empty state joins (warned)
        (Seen(None, False), Seen(None, True), None),  # a state warmed from history
        (Seen(None, True), Seen(None, True), None),  # both from before the stamp
        (Seen(A, True), Seen(B, True), "different deployments"),
        (Seen(A, False), Seen(B, False), "different deployments"),
        (Seen(None, False), Seen(A, True), "never served"),  # the finding: a fresh database
        (Seen(None, True), Seen(A, True), "never served"),
        (Seen(None, False), Seen(A, False), None),  # a stamped state that holds nothing
    ],
)
def test_which_stores_may_be_served_together(decisions: Seen, state: Seen, refused: str | None):
    found = problem(settings_for(Path("/srv")), decisions, state)
    if refused is None:
        assert found is None
    else:
        assert found is not None
        assert refused in found
        assert "/srv/riskgate.db" in found
        assert "/srv/state.db" in found
        assert "RISKGATE_STATE_PATH" in found


def test_first_start_stamps_both_stores_with_one_id_and_a_restart_agrees(tmp_path: Path):
    settings = settings_for(tmp_path)
    assert check_before_serve(settings) is None
    stamp = stamp_of(settings)
    assert stamp is not None
    state = SQLiteState(settings.state_path)
    assert state.deployment_id() == stamp
    state.close()
    assert check_before_serve(settings) is None
    assert stamp_of(settings) == stamp


def test_a_fresh_database_beside_a_used_state_is_refused(tmp_path: Path):
    used = settings_for(tmp_path)
    assert check_before_serve(used) is None
    with_payment(tmp_path / "state.db")

    fresh_db = settings_for(tmp_path, db_name="elsewhere.db")
    found = check_before_serve(fresh_db)

    assert found is not None
    assert "elsewhere.db" in found
    assert "state.db" in found
    assert "never served" in found
    assert stamp_of(fresh_db) is None, "a refused start stamps nothing"


def test_stores_of_two_deployments_are_refused(tmp_path: Path):
    one, two = settings_for(tmp_path, "one.db", "one-state.db"), settings_for(tmp_path, "two.db")
    assert check_before_serve(one) is None
    assert check_before_serve(two) is None
    mixed = settings_for(tmp_path, "one.db", "state.db")  # one's database, two's state

    found = check_before_serve(mixed)

    assert found is not None
    assert "different deployments" in found


def test_a_state_warmed_from_history_joins_a_new_deployment(tmp_path: Path):
    with_payment(tmp_path / "state.db")  # replayed offline, never served
    settings = settings_for(tmp_path)
    assert check_before_serve(settings) is None
    state = SQLiteState(settings.state_path)
    assert state.deployment_id() == stamp_of(settings)
    state.close()


def test_riskgate_serve_refuses_in_one_line_and_a_worker_refuses_too(
    tmp_path: Path,
    fault_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
):
    from serving.core.auth import KeyRing
    from serving.http.commands import serve
    from serving.http.runtime import build

    assert check_before_serve(Settings()) is None  # the fault_env's stores: stamped
    with_payment(Path(fault_env["RISKGATE_STATE_PATH"]))
    monkeypatch.setenv("RISKGATE_DB_URL", f"sqlite:///{tmp_path / 'new.db'}")

    def no_exec(*_args: object) -> None:
        raise AssertionError("serve went on to start the server")

    monkeypatch.setattr(os, "execvpe", no_exec)
    code = serve(argparse.Namespace(host="127.0.0.1", port=1, workers=1))
    err = capsys.readouterr().err.strip().splitlines()
    with pytest.raises(DeploymentMismatchError, match="never served"):
        build(Settings(), KeyRing.parse(fault_env["RISKGATE_API_KEYS"]))

    assert code == 2
    assert len(err) == 1
    assert err[0].startswith("error: the online state (")
    assert "new.db" in err[0]


def test_redis_state_is_stamped_and_checked_like_the_sqlite_one(tmp_path: Path):
    url = os.environ.get("RISKGATE_TEST_REDIS_URL")
    if not url:
        pytest.skip("RISKGATE_TEST_REDIS_URL is not set (`source .ci/services start`)")
    from features.redis_state import RedisState

    prefix = f"riskgate-test:{uuid.uuid4().hex[:12]}:"
    settings = Settings(
        db_url=f"sqlite:///{tmp_path / 'riskgate.db'}",
        state_url=url,
        state_prefix=prefix,
        api_keys=None,
    )
    store = RedisState.from_url(url, prefix=prefix)
    try:
        assert check_before_serve(settings) is None
        assert store.deployment_id() == stamp_of(settings)
        store.record_payment(event("t-r"))
        found = check_before_serve(
            settings.model_copy(update={"db_url": f"sqlite:///{tmp_path}/x.db"})
        )
        assert found is not None
        assert prefix in found
        assert "RISKGATE_STATE_URL" in found
    finally:
        store.clear()
        store.close()
