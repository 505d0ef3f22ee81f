"""Builds the real dependencies from settings at start-up (and nothing at import time)."""

from __future__ import annotations

import gc
import json
import logging
import threading
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert, select, update

from features.state import SQLiteState, StateStore
from serving.core.auth import KeyRing
from serving.core.schemas import now_utc
from serving.core.settings import Settings
from serving.http.deployment import DeploymentMismatchError, ensure_one_deployment
from serving.review.webhooks import Deliverer
from serving.scoring.groups import GroupScorer, LoopGroupScorer
from serving.scoring.holder import ModelHolder, check_artifact
from serving.scoring.policy import PolicyConfig, parse_config, to_doc
from serving.scoring.scorer import Scorer
from serving.store import db
from serving.store.checkpoint import BACKSTOP_PAGES, DEFAULT_PAGES, WalCheckpointer, sqlite_path
from training.model import RiskModel

log = logging.getLogger("riskgate")
PROBE_EVERY_S = 2.0  # how often readiness re-runs its probe prediction


def load_model(settings: Settings) -> tuple[RiskModel | None, str | None]:
    """A local artifact directory if configured, else the registry alias (champion)."""
    if settings.model_dir:
        model = RiskModel.load(settings.model_dir)
        return model, f"local:{Path(settings.model_dir).name}"
    if settings.bento_model:  # inside a Bento: the model BentoML packed, no MLflow needed
        import bentoml

        stored = bentoml.models.get(settings.bento_model)
        version = stored.info.labels.get("mlflow_version", "none")
        return RiskModel.load(stored.path), f"bento:{stored.tag}:mlflow-{version}"
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
    watchers: list[Every] = field(default_factory=list)
    # /score's group commit (None: scored on the caller)
    groups: GroupScorer | LoopGroupScorer | None = None
    checkpointer: WalCheckpointer | None = None  # SQLite WAL checkpoints off the request path
    _policy_at: datetime | None = None  # updated_at of the stored policy in force here
    _model_generation: int = 0  # reloads (through any process) this process has followed
    _probe: tuple[Any, float, bool] | None = None  # (loaded model, when, finite) for ready()
    # the shadow policy (issue 21): (id, policy) decided beside the live one, never acted on
    _shadow: tuple[str, PolicyConfig] | None = None
    _shadow_at: datetime | None = None

    def wake_webhooks(self) -> None:
        if self.deliverer is not None:
            self.deliverer.wake()

    def policy(self) -> PolicyConfig:
        return self._policy

    def set_policy(self, doc: dict[str, Any], actor: str) -> PolicyConfig:
        config = parse_config(doc)  # raises ValueError with a precise message
        now = now_utc()
        with self.engine.begin() as conn:
            _put_setting(conn, "policy", to_doc(config), now, actor)
        self._policy = config
        self._policy_at = _aware(now)
        return config

    def policy_at(self) -> datetime | None:
        """When the policy in force was stored (None: from the file or the default)."""
        return self._policy_at

    def shadow(self) -> tuple[str, PolicyConfig] | None:
        return self._shadow

    def set_shadow(self, doc: dict[str, Any] | None, actor: str) -> dict[str, Any]:
        """Start a shadow policy (doc) or stop it (None); stored so every worker follows."""
        now = now_utc()
        value: dict[str, Any] = {}
        if doc is not None:
            config = parse_config(doc)
            value = {
                "id": f"shadow-{now.strftime('%Y%m%dT%H%M%S%fZ')}",
                "policy": to_doc(config),
                "started_at": now.isoformat().replace("+00:00", "Z"),
                "by": actor,
            }
        with self.engine.begin() as conn:
            _put_setting(conn, "policy_shadow", value, now, actor)
        self._adopt_shadow(value, now)
        return value

    def _adopt_shadow(self, value: dict[str, Any], at: datetime) -> None:
        self._shadow = (value["id"], parse_config(value["policy"])) if value else None
        self._shadow_at = _aware(at)

    def ready(self) -> bool:
        """A model is loaded and its probe prediction is finite (checked at most every
        PROBE_EVERY_S seconds per loaded model: /readyz may be polled often)."""
        loaded = self.holder.current
        if loaded.model is None:
            return False
        now = time.monotonic()
        seen = self._probe
        if seen is None or seen[0] is not loaded or now - seen[1] > PROBE_EVERY_S:
            seen = (loaded, now, self.scorer.fresh.probe(loaded))
            self._probe = seen
        return seen[2]

    def reload(self, actor: str = "system") -> str:
        """Load the alias's current version and swap it in; requests in flight are unaffected.
        The other worker processes (and replicas) follow within `config_poll_seconds`."""
        with self._reload_lock:
            version = self._load_and_swap()
            with self.engine.begin() as conn:
                row = _get_setting(conn, "model")
                generation = int(row.value.get("generation", 0)) + 1 if row else 1
                doc = {"generation": generation, "version": version}
                _put_setting(conn, "model", doc, now_utc(), actor)
            self._model_generation = generation
            return version

    def _load_and_swap(self) -> str:
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

    def sync_config(self) -> None:
        """Adopt a policy or a model reload made through another worker process or replica:
        an admin call reaches one process, the change must reach them all."""
        with self.engine.connect() as conn:
            policy = _get_setting(conn, "policy")
            model = _get_setting(conn, "model")
            shadow = _get_setting(conn, "policy_shadow")
        if shadow is not None and _aware(shadow.updated_at) != self._shadow_at:
            self._adopt_shadow(shadow.value, shadow.updated_at)
        if policy is not None and _aware(policy.updated_at) != self._policy_at:
            self._policy = parse_config(policy.value)
            self._policy_at = _aware(policy.updated_at)
        generation = int(model.value.get("generation", 0)) if model is not None else 0
        if generation > self._model_generation:
            with self._reload_lock:
                if generation > self._model_generation:
                    try:
                        self._load_and_swap()
                    except Exception:  # keep the current model; the next poll retries
                        log.exception("model reload made elsewhere could not be followed")
                        return
                    self._model_generation = generation

    def close(self) -> None:
        for watcher in self.watchers:
            watcher.stop()
        if self.checkpointer is not None:
            self.checkpointer.close()
        if self.groups is not None:
            self.groups.close()
        if self.deliverer is not None:
            self.deliverer.stop()
        self.scorer.close()
        self.state.close()
        self.engine.dispose()


class Every:
    """Runs `task` every `every_s` seconds on a daemon thread until stopped; a failure is
    logged and retried at the next tick (a transient database error must not end it)."""

    def __init__(self, name: str, every_s: float, task: Callable[[], object]) -> None:
        self.name, self.every_s, self.task = name, every_s, task
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Every:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.task()
            except Exception:
                log.exception("%s: failed, retrying in %.0f s", self.name, self.every_s)
            self._stop.wait(self.every_s)


def refresh_queue_gauges(engine: Engine) -> None:
    """The queue gauges (depth, oldest age, overdue) from the database."""
    from serving.core.metrics import m
    from serving.review.queue import queue_stats

    stats = queue_stats(engine, now_utc())
    m().queue_depth.set(stats["depth"])
    m().queue_oldest.set(stats["oldest_wait_seconds"])
    m().queue_overdue.set(stats["sla_breaches"])


def _check_delays(runtime: Runtime) -> None:
    """payment.delayed / review.delay_expected webhooks (serving/http/calendar.py)."""
    from serving.http.calendar import check_delays

    check_delays(runtime)


def _aware(at: datetime) -> datetime:
    """SQLite hands timestamps back without their zone (they are stored in UTC)."""
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _get_setting(conn: Any, name: str) -> Any:
    return conn.execute(
        select(db.settings_table.c.value, db.settings_table.c.updated_at).where(
            db.settings_table.c.name == name
        )
    ).first()


def _put_setting(conn: Any, name: str, value: dict[str, Any], now: datetime, actor: str) -> None:
    values = {"value": value, "updated_at": now, "updated_by": actor}
    done = conn.execute(
        update(db.settings_table).where(db.settings_table.c.name == name).values(**values)
    )
    if done.rowcount == 0:
        conn.execute(insert(db.settings_table).values(name=name, **values))


def _initial_config(
    settings: Settings, engine: Engine
) -> tuple[PolicyConfig, datetime | None, int]:
    """(policy, its stored updated_at, model reload generation) at start-up."""
    with engine.connect() as conn:
        row = _get_setting(conn, "policy")
        model = _get_setting(conn, "model")
    generation = int(model.value.get("generation", 0)) if model is not None else 0
    if row is not None:
        return parse_config(row.value), _aware(row.updated_at), generation
    if settings.policy_file:
        path = Path(settings.policy_file)
        text = path.read_text()
        doc = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        return parse_config(doc), None, generation
    return PolicyConfig(), None, generation


def open_state(settings: Settings) -> StateStore:
    """Redis when RISKGATE_STATE_URL is set (shared by replicas), else the embedded SQLite log."""
    if settings.state_url:
        from features.redis_state import RedisState

        return RedisState.from_url(settings.state_url, prefix=settings.state_prefix)
    return SQLiteState(
        settings.state_path,
        wal_autocheckpoint=_autocheckpoint(settings),
        mmap_mib=settings.sqlite_mmap_mib,
    )


def _autocheckpoint(settings: Settings) -> int:
    """Commits checkpoint past SQLite's default, or only past the backstop when this process
    checkpoints on a thread of its own."""
    return BACKSTOP_PAGES if settings.wal_checkpoint_seconds > 0 else DEFAULT_PAGES


def _checkpointer(settings: Settings, store: StateStore) -> WalCheckpointer | None:
    """The WAL checkpointer of this process's SQLite files (None: none, or disabled)."""
    if settings.wal_checkpoint_seconds <= 0:
        return None
    paths = [p for p in (sqlite_path(settings.db_url),) if p is not None]
    if isinstance(store, SQLiteState):
        paths.append(Path(settings.state_path))
    return WalCheckpointer(paths) if paths else None


def build(settings: Settings, keys: KeyRing, *, state: StateStore | None = None) -> Runtime:
    """Engine + schema, online state, model (refused if its features differ), scorer."""
    from serving.core.metrics import m

    m()  # every metric and its bounded series at 0 from start-up, before the first event
    engine = db.make_engine(
        settings.db_url,
        synchronous=settings.sqlite_synchronous,
        wal_autocheckpoint=_autocheckpoint(settings),
        cache_mib=settings.sqlite_cache_mib,
        mmap_mib=settings.sqlite_mmap_mib,
    )
    db.create_schema(engine)
    store = state if state is not None else open_state(settings)
    try:  # both stores from one deployment, else no start (serving/http/deployment.py)
        ensure_one_deployment(settings, engine, store)
    except DeploymentMismatchError:
        store.close()
        engine.dispose()
        raise
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
    if settings.model_deadline_ms == 0:
        log.warning(
            "RISKGATE_MODEL_DEADLINE_MS=0: no model deadline, the model is called inline and a "
            "slow model delays every payment (a benchmark setting, not for production)"
        )
    holder = ModelHolder(store, model, version)
    _report_walk(holder)
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
    runtime._policy, runtime._policy_at, runtime._model_generation = _initial_config(
        settings, engine
    )
    runtime.scorer.policy = runtime.policy
    runtime.scorer.fresh.shadow = runtime.shadow
    with engine.connect() as conn:
        shadow = _get_setting(conn, "policy_shadow")
    if shadow is not None:
        runtime._adopt_shadow(shadow.value, shadow.updated_at)
    # The start-up objects (frameworks, the model, the replayed state) live as long as the
    # process: keep them out of the collector's full scans, which otherwise pause requests.
    # A request's objects die young: collect the young generation less often and full scans
    # far less often (measured: no gen-2 pause under load, ~15% less CPU per request).
    gc.collect()
    gc.freeze()
    gc.set_threshold(*settings.gc_threshold)
    if settings.capacity_plan == "team":
        runtime.scorer.fresh.capacity_at = team_capacity(settings)
    if settings.score_group_max > 1:
        scorer = runtime.scorer
        runtime.groups = (
            LoopGroupScorer(scorer.score_group, scorer.try_serial, settings.score_group_max)
            if settings.score_groups_on == "loop"
            else GroupScorer(scorer.score_group, settings.score_group_max)
        ).start()
    runtime.watchers = [
        Every("queue-gauges", 5.0, lambda: refresh_queue_gauges(engine)).start(),
        Every("config-sync", settings.config_poll_seconds, runtime.sync_config).start(),
        Every("delay-notices", 60.0, lambda: _check_delays(runtime)).start(),
    ]
    runtime.checkpointer = _checkpointer(settings, store)
    if runtime.checkpointer is not None:
        runtime.watchers.append(
            Every(
                "wal-checkpoint", settings.wal_checkpoint_seconds, runtime.checkpointer.run
            ).start()
        )
    if settings.webhook_url:
        runtime.deliverer = Deliverer(engine, settings.webhook_url, settings.webhook_secret)
        runtime.deliverer.start()
    return runtime


def _report_walk(holder: ModelHolder) -> None:
    """Operators see whether the online features run compiled (a gauge, and a warning when
    not): a Bento or image without the built features/_windows.c is correct but slower."""
    from serving.core.metrics import m

    compiled = bool(holder.current.online.compiled)
    m().online_compiled.set(1 if compiled else 0)
    if not compiled:
        log.warning(
            "the online features run in Python: features/_windows.c is not built for this "
            "Python (`pip install -e .` builds it); scoring is correct but about 2x slower"
        )


def team_capacity(settings: Settings) -> Callable[[float], float]:
    """RISKGATE_CAPACITY_PLAN=team: reviews an hour the team on shift at t can take, planned as
    `riskgate simulate` plans it (the lower of 80% utilisation and the rate at which 95% of the
    holds stay within the SLA), so the service adapts as the simulator shows."""
    from serving.review.settlement import team_of

    team = team_of(settings.team_shifts, settings.team_handling_minutes, settings.sla_minutes)

    cache: dict[int, float] = {}

    def at(t: float) -> float:  # t: seconds since the epoch; shifts are UTC hours of the day
        minute = int(t // 60)  # shifts change on the minute at most: plan once a minute
        if minute not in cache:
            if len(cache) > 1_440:
                cache.clear()
            cache[minute] = float(team.sla_capacity_per_hour(minute * 60.0))
        return cache[minute]

    return at
