"""Two runtimes on one database and state log: what two worker processes share.

A policy change or a model reload reaches one worker (the one the admin's request landed on);
`sync_config` is how the other adopts it. And each worker applies its GC settings.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from serving.core.auth import KeyRing
from serving.core.settings import Settings
from serving.http.runtime import build

KEYS = "backend:backend-key-0123456789,admin:admin-key-0123456789"


def local(tmp_path: Path, model_dir: Path, **overrides: Any) -> Settings:
    """A runtime's settings on a database and state log in tmp_path."""
    return Settings(
        model_dir=str(model_dir),
        db_url=f"sqlite:///{tmp_path}/rg.db",
        state_path=str(tmp_path / "state.db"),
        api_keys=KEYS,
        **overrides,
    )


@pytest.fixture
def two(tmp_path: Path, model_dir: Path) -> Iterator[tuple[Any, Any]]:
    s = local(tmp_path, model_dir, config_poll_seconds=3600)  # the tests call sync_config
    a = build(s, KeyRing.parse(KEYS))
    b = build(s, KeyRing.parse(KEYS))
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def test_a_policy_set_through_one_worker_is_adopted_by_the_other(two) -> None:
    a, b = two
    a.set_policy({"block": {"card_id": ["card-x"]}}, "admin")
    assert "card-x" in a.policy().block["card_id"]
    assert "card_id" not in b.policy().block
    b.sync_config()
    assert "card-x" in b.policy().block["card_id"]
    a.set_policy({"allow": {"device_id": ["dev-1"]}}, "admin")  # a later change replaces it
    b.sync_config()
    assert "card_id" not in b.policy().block
    assert b.policy().allow["device_id"] == frozenset({"dev-1"})


def test_a_reload_through_one_worker_makes_the_other_reload(two, monkeypatch) -> None:
    a, b = two
    swapped: list[str] = []
    real_swap = b.holder.swap
    monkeypatch.setattr(b.holder, "swap", lambda model, v: (swapped.append(v), real_swap(model, v)))
    b.sync_config()
    assert swapped == []  # nothing new: no reload
    a.reload("admin")
    b.sync_config()
    assert len(swapped) == 1
    b.sync_config()
    assert len(swapped) == 1  # once per reload, not once per poll
    a.reload("admin")
    a.reload("admin")
    b.sync_config()
    assert len(swapped) == 2  # two reloads elsewhere since the last poll: one swap catches up


def test_a_worker_started_after_a_reload_does_not_reload_again(
    two, tmp_path: Path, model_dir: Path
) -> None:
    a, _ = two
    a.reload("admin")
    s = Settings(
        model_dir=str(model_dir),
        db_url=f"sqlite:///{tmp_path}/rg.db",
        state_path=str(tmp_path / "state.db"),
        api_keys=KEYS,
        config_poll_seconds=3600,
    )
    late = build(s, KeyRing.parse(KEYS))
    try:
        before = late.holder.current
        late.sync_config()
        assert late.holder.current is before
    finally:
        late.close()


def test_each_worker_applies_its_gc_thresholds(tmp_path: Path, model_dir: Path) -> None:
    saved = gc.get_threshold()
    s = local(tmp_path, model_dir, gc_threshold=(12_345, 21, 43))
    try:
        rt = build(s, KeyRing.parse(KEYS))
        rt.close()
        assert gc.get_threshold() == (12_345, 21, 43)
    finally:
        gc.set_threshold(*saved)


def test_gc_thresholds_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="gc_threshold"):
        Settings(gc_threshold=(700, -1, 10))


def test_the_scoring_path_is_left_out_of_tracing_unless_asked(monkeypatch) -> None:
    """BentoML's OpenTelemetry spans cost about a third of a /score request; with no exporter
    they go nowhere, so /score and /score_batch are not traced by default."""
    from serving.http import service

    assert service.Riskgate.config["tracing"]["excluded_urls"] == "/score"  # type: ignore[attr-defined]
    monkeypatch.delenv("RISKGATE_TRACE_SCORING", raising=False)
    assert service._trace_scoring() is False
    for value, want in (("true", True), ("1", True), ("yes", True), ("false", False), ("", False)):
        monkeypatch.setenv("RISKGATE_TRACE_SCORING", value)
        assert service._trace_scoring() is want


def test_the_wait_forecast_runs_as_many_simulations_as_configured(
    tmp_path: Path, model_dir: Path, monkeypatch
) -> None:
    """RISKGATE_FORECAST_RUNS reaches the forecast (its band is the runs' 5th-95th percentile:
    too few runs and its edges are the two most extreme runs)."""
    from datetime import UTC, datetime

    from serving.http import calendar

    seen: list[int] = []
    real = calendar.forecast

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs["runs"])
        return real(*args, **kwargs)

    monkeypatch.setattr(calendar, "forecast", spy)
    monkeypatch.setattr(calendar, "_cache", {})
    s = local(tmp_path, model_dir, forecast_runs=3)
    rt = build(s, KeyRing.parse(KEYS))
    try:
        _, hours = calendar.current_forecast(rt, datetime(2026, 3, 1, 9, tzinfo=UTC))
    finally:
        rt.close()
    assert seen == [3]
    assert len(hours) == calendar.HORIZON_HOURS
    assert Settings().forecast_runs == 200  # what bench_forecast.py checks


@pytest.mark.parametrize("runs", [0, 201])
def test_forecast_runs_out_of_range_are_refused(runs: int) -> None:
    with pytest.raises(ValueError, match="forecast_runs"):
        Settings(forecast_runs=runs)


def _autocheckpoint(rt: Any) -> tuple[int, int]:
    """wal_autocheckpoint of the runtime's decisions engine and of its state log."""
    with rt.engine.connect() as conn:
        engine_pages = conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
    state_pages = rt.state._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
    return int(engine_pages), int(state_pages)


def test_wal_checkpoints_run_on_a_thread_of_their_own(tmp_path: Path, model_dir: Path) -> None:
    from serving.store.checkpoint import BACKSTOP_PAGES

    rt = build(local(tmp_path, model_dir), KeyRing.parse(KEYS))
    try:
        assert _autocheckpoint(rt) == (BACKSTOP_PAGES, BACKSTOP_PAGES)
        assert "wal-checkpoint" in [w.name for w in rt.watchers]
        assert rt.checkpointer is not None
        assert rt.checkpointer.paths == (tmp_path / "rg.db", tmp_path / "state.db")
        assert all(busy == 0 for busy, _, _ in rt.checkpointer.run())
    finally:
        rt.close()


def test_wal_checkpoints_off_leaves_them_to_sqlite(tmp_path: Path, model_dir: Path) -> None:
    rt = build(local(tmp_path, model_dir, wal_checkpoint_seconds=0), KeyRing.parse(KEYS))
    try:
        assert _autocheckpoint(rt) == (1_000, 1_000)
        assert rt.checkpointer is None
        assert "wal-checkpoint" not in [w.name for w in rt.watchers]
    finally:
        rt.close()


def test_a_negative_checkpoint_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="wal_checkpoint_seconds"):
        Settings(wal_checkpoint_seconds=-1)


def test_operators_see_whether_the_online_features_run_compiled(
    tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    """The gauge says 1 with the built walk and 0 (with a warning at start) without it: a
    Bento or image that lost features/_windows.c scores correctly but slower, visibly."""
    import logging

    import features.online as online
    from serving.core.metrics import m

    rt = build(local(tmp_path, model_dir), KeyRing.parse(KEYS))
    try:
        assert rt.holder.current.online.compiled is (online._windows is not None)
        assert m().online_compiled._value.get() == (1.0 if online._windows is not None else 0.0)
    finally:
        rt.close()
    monkeypatch.setattr(online, "_windows", None)  # as where the extension is not built
    with caplog.at_level(logging.WARNING, logger="riskgate"):
        rt = build(local(tmp_path / "py", model_dir), KeyRing.parse(KEYS))
    try:
        assert rt.holder.current.online.compiled is False
        assert m().online_compiled._value.get() == 0.0
        assert any("online features run in Python" in r.getMessage() for r in caplog.records)
    finally:
        rt.close()
