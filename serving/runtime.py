"""Builds the real dependencies from settings at start-up (and nothing at import time)."""

from __future__ import annotations

import gc
import json
import logging
import threading
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert, select, update

from features.state import SQLiteState, StateStore
from serving import db
from serving.auth import KeyRing
from serving.policy import PolicyConfig, parse_config, to_doc
from serving.schemas import now_utc
from serving.scorer import ModelHolder, Scorer, check_artifact
from serving.settings import Settings
from serving.webhooks import Deliverer
from training.model import RiskModel

log = logging.getLogger("riskgate")


def load_model(settings: Settings) -> tuple[RiskModel | None, str | None]:
    """A local artifact directory if configured, else the registry alias (champion)."""
    if settings.model_dir:
        model = RiskModel.load(settings.model_dir)
        return model, f"local:{Path(settings.model_dir).name}"
    from training import tracking

    found = tracking.load_alias(settings.model_alias)
    if found is None:
        return None, None
    model, version = found
    return model, version


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    state: StateStore
    holder: ModelHolder
    scorer: Scorer
    keys: KeyRing
    _policy: PolicyConfig = field(default_factory=PolicyConfig)
    _reload_lock: threading.Lock = field(default_factory=threading.Lock)
    deliverer: Deliverer | None = None
    watcher: QueueWatcher | None = None

    def wake_webhooks(self) -> None:
        if self.deliverer is not None:
            self.deliverer.wake()

    def policy(self) -> PolicyConfig:
        return self._policy

    def set_policy(self, doc: dict[str, Any], actor: str) -> PolicyConfig:
        config = parse_config(doc)  # raises ValueError with a precise message
        now = now_utc()
        with self.engine.begin() as conn:
            exists = conn.execute(
                select(db.settings_table.c.name).where(db.settings_table.c.name == "policy")
            ).first()
            values = {"value": to_doc(config), "updated_at": now, "updated_by": actor}
            if exists:
                conn.execute(
                    update(db.settings_table)
                    .where(db.settings_table.c.name == "policy")
                    .values(**values)
                )
            else:
                conn.execute(insert(db.settings_table).values(name="policy", **values))
        self._policy = config
        return config

    def ready(self) -> bool:
        return self.holder.current.model is not None

    def reload(self) -> str:
        """Load the alias's current version and swap it in; requests in flight are unaffected."""
        with self._reload_lock:
            try:
                model, version = load_model(self.settings)
            except Exception as exc:  # a broken artifact must not take the service down
                raise LookupError(f"cannot load the model: {exc}") from exc
            if model is None or version is None:
                raise LookupError(f"no model under alias {self.settings.model_alias!r}")
            self.holder.swap(model, version)
            gc.collect()
            gc.freeze()
            return version

    def close(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        if self.deliverer is not None:
            self.deliverer.stop()
        self.scorer.close()
        self.state.close()
        self.engine.dispose()


class QueueWatcher:
    """Refreshes the queue gauges (depth, oldest age, overdue) every few seconds."""

    def __init__(self, engine: Engine, every_s: float = 5.0) -> None:
        self.engine, self.every_s = engine, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="queue-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def refresh(self) -> None:
        from serving.metrics import m
        from serving.queue import queue_stats

        stats = queue_stats(self.engine, now_utc())
        m().queue_depth.set(stats["depth"])
        m().queue_oldest.set(stats["oldest_wait_seconds"])
        m().queue_overdue.set(stats["sla_breaches"])

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception:  # a transient database error must not end the watcher
                log.exception("queue gauges not refreshed")
            self._stop.wait(self.every_s)


def _initial_policy(settings: Settings, engine: Engine) -> PolicyConfig:
    with engine.connect() as conn:
        row = conn.execute(
            select(db.settings_table.c.value).where(db.settings_table.c.name == "policy")
        ).first()
    if row is not None:
        return parse_config(row.value)
    if settings.policy_file:
        path = Path(settings.policy_file)
        text = path.read_text()
        doc = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        return parse_config(doc)
    return PolicyConfig()


def open_state(settings: Settings) -> StateStore:
    """Redis when RISKGATE_STATE_URL is set (shared by replicas), else the embedded SQLite log."""
    if settings.state_url:
        from features.redis_state import RedisState

        return RedisState.from_url(settings.state_url, prefix=settings.state_prefix)
    return SQLiteState(settings.state_path)


def build(settings: Settings, keys: KeyRing, *, state: StateStore | None = None) -> Runtime:
    """Engine + schema, online state, model (refused if its features differ), scorer."""
    engine = db.make_engine(settings.db_url, synchronous=settings.sqlite_synchronous)
    db.create_schema(engine)
    store = state if state is not None else open_state(settings)
    try:
        model, version = load_model(settings)
        if model is not None:
            check_artifact(model)
    except Exception:  # keep serving on the fallback; /readyz says not ready; reload can fix it
        log.exception("the model could not be loaded: serving with the fallback rules")
        model, version = None, None
    if model is None:
        log.warning(
            "no model under alias %r: every payment goes to the fallback", settings.model_alias
        )
    holder = ModelHolder(store, model, version)
    if model is not None:  # warm the booster so the first payment is not the slow one
        import numpy as np

        model.predict_proba(np.zeros((1, len(model.features))))
        model.contributions(np.zeros((1, len(model.features))))
    runtime = Runtime(
        settings,
        engine,
        store,
        holder,
        Scorer(engine, holder, lambda: PolicyConfig(), settings),
        keys,
    )
    runtime._policy = _initial_policy(settings, engine)
    runtime.scorer.policy = runtime.policy
    # The start-up objects (frameworks, the model, the replayed state) live as long as the
    # process: keep them out of the collector's full scans, which otherwise pause requests.
    gc.collect()
    gc.freeze()
    runtime.watcher = QueueWatcher(engine)
    runtime.watcher.start()
    if settings.webhook_url:
        runtime.deliverer = Deliverer(engine, settings.webhook_url, settings.webhook_secret)
        runtime.deliverer.start()
    return runtime
