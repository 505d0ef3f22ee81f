"""Scale-out tests: PostgreSQL for the queue and records, Redis for the online state, replicas.

The servers come from `source .ci/services start` (CI always runs it), which exports
RISKGATE_TEST_PG_URL and RISKGATE_TEST_REDIS_URL; without them these tests are skipped.

- `pg_url`: a fresh database (random name, created on that server) per test module, dropped
  afterwards; `pg_engine` is that database migrated to the current schema;
- `scale_model_dir`: a small model trained once a session whose review threshold sits between
  the low- and high-risk reference payments (the pattern of tests/serving/conftest.py, copied);
- `running_service()`: the BentoML service in-process (a TestClient), configured from env;
- `replicas`: starts real `riskgate serve` processes on 127.0.0.1 (free ports), tracked by PID
  and stopped in teardown (SIGTERM, then SIGKILL of the tree found by PID, never by name).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# BentoML reads its home when first imported: a scratch directory before anything imports it
# (whichever test conftest runs first wins; all are scratch directories).
if "bentoml" not in sys.modules:
    _BENTOML_HOME = tempfile.mkdtemp(prefix="riskgate-scale-bentoml-")
    atexit.register(shutil.rmtree, _BENTOML_HOME, ignore_errors=True)
    os.environ["BENTOML_HOME"] = _BENTOML_HOME
os.environ["BENTOML_DO_NOT_TRACK"] = "true"

from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.engine import make_url

from serving.store import db
from tests.servers import free_port, log_tail
from tests.serving.helpers import high_risk, low_risk, running_service  # noqa: F401 (re-exported)
from tests.small_model import small_model
from training.model import RiskModel

ROWS, DAYS, SEED = 20_000, 40, 11
DEADLINE_MS = "5000"  # generous: a loaded machine must not push the model into the fallback
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 20.0
POLL_S = 0.1

# --- keys: one backend, one admin, twenty named reviewers ----------------------------------------

BACKEND_KEY = "scale-backend-key-0123456789"
ADMIN_KEY = "scale-admin-key-0123456789ab"
REVIEWER_KEYS = {f"rev{i:02d}": f"scale-reviewer-{i:02d}-key-0123456789" for i in range(20)}
KEY_SPEC = ",".join(
    [f"backend:{BACKEND_KEY}", f"admin:{ADMIN_KEY}"]
    + [f"reviewer:{name}:{key}" for name, key in REVIEWER_KEYS.items()]
)
BACKEND = {"Authorization": f"Bearer {BACKEND_KEY}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
REVIEWERS = [{"Authorization": f"Bearer {key}"} for key in REVIEWER_KEYS.values()]
REVIEWER = REVIEWERS[0]


NO_DIGITS = str.maketrans("0123456789", "ghijklmnop")


def new_tag() -> str:
    """A run-unique tag: every identifier a test sends carries one, so in a shared database or
    Redis its entities have no history but their own. Letters only: a run of hex digits could
    form a Luhn-valid card number with a payment's counter, and be refused."""
    return uuid.uuid4().hex[:12].translate(NO_DIGITS)


# --- the model -------------------------------------------------------------------------------


def probability_of(model: RiskModel, payment: dict[str, Any]) -> float:
    """The model's probability for a payment scored against an empty online state."""
    from features.online import OnlineFeatures, prepare
    from features.registry import select as select_features
    from features.state import MemoryState
    from serving.core.schemas import PaymentIn

    online = OnlineFeatures(MemoryState(), select_features(model.features))
    x = online.compute(prepare(PaymentIn.model_validate(payment).contract()))
    return float(model.predict_proba(x.reshape(1, -1))[0])


@pytest.fixture(scope="session")
def scale_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained artifact whose review threshold separates the two reference payments.

    The threshold is the geometric mean of their probabilities, so `low_risk` is approved and
    `high_risk` held for review deterministically, through the real model; the decline
    threshold is above 1 (the model never declines on its own).
    """
    model = small_model()  # the fault suite's, trained once (tests/small_model.py)
    return model.save(tmp_path_factory.mktemp("scale-model") / "artifact")


# --- PostgreSQL and Redis ----------------------------------------------------------------------


def _skip_without(var: str) -> str:
    url = os.environ.get(var)
    if not url:
        pytest.skip(
            f"{var} is not set: start the test servers with `source .ci/services start` "
            "(CI always does)"
        )
    return url


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    """The test server's URL (its own database); fails loudly if set but not answering."""
    url = _skip_without("RISKGATE_TEST_PG_URL")
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        pytest.fail(f"RISKGATE_TEST_PG_URL is set but PostgreSQL does not answer: {exc}")
    finally:
        engine.dispose()
    return url


@pytest.fixture(scope="session")
def redis_test_url() -> str:
    url = _skip_without("RISKGATE_TEST_REDIS_URL")
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"RISKGATE_TEST_REDIS_URL is set but Redis does not answer: {exc}")
    finally:
        client.close()
    return url


@contextlib.contextmanager
def server_admin(server_url: str) -> Iterator[Any]:
    """An autocommit connection to the test server (CREATE / DROP / ALTER DATABASE)."""
    engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def pg_url(pg_server_url: str) -> Iterator[str]:
    """A fresh, empty database for this test module on the test server; dropped afterwards."""
    name = f"riskgate_scale_{uuid.uuid4().hex[:10]}"
    with server_admin(pg_server_url) as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(pg_server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with server_admin(pg_server_url) as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true'))
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def pg_engine(pg_url: str) -> Iterator[Engine]:
    """The module's database, migrated (Alembic) to the current schema, for reading back."""
    engine = db.make_engine(pg_url)
    db.create_schema(engine)
    try:
        yield engine
    finally:
        engine.dispose()


COUNTED = ("decisions", "cases", "idempotency_keys", "audit_log", "labels", "outbox")


def truncate_all(engine: Engine) -> None:
    """Empty every table (between tests that count rows in a shared module database)."""
    names = ", ".join(t.name for t in db.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


def counts(engine: Engine) -> dict[str, int]:
    out = {}
    with engine.connect() as conn:
        for name in COUNTED:
            table = db.metadata.tables[name]
            out[name] = int(conn.execute(select(func.count()).select_from(table)).scalar_one())
    return out


def records_of(engine: Engine, transaction_id: str, case_id: int | None) -> dict[str, Any]:
    """What the database holds for one payment: case row, labels, outbox events, audit."""
    with engine.connect() as conn:
        case = None
        if case_id is not None:
            row = conn.execute(select(db.cases).where(db.cases.c.id == case_id)).first()
            case = None if row is None else dict(row._mapping)
        decision = conn.execute(
            select(db.decisions).where(db.decisions.c.transaction_id == transaction_id)
        ).first()
        labels = conn.execute(
            select(db.labels).where(db.labels.c.transaction_id == transaction_id)
        ).all()
        events = conn.execute(
            select(db.outbox).where(db.outbox.c.transaction_id == transaction_id)
        ).all()
        targets = [transaction_id] + ([] if case_id is None else [str(case_id)])
        audit = conn.execute(
            select(db.audit_log)
            .where(db.audit_log.c.target.in_(targets))
            .order_by(db.audit_log.c.id)
        ).all()
    return {
        "case": case,
        "decision": None if decision is None else dict(decision._mapping),
        "labels": [dict(r._mapping) for r in labels],
        "outbox": [dict(r._mapping) for r in events],
        "audit": [dict(r._mapping) for r in audit],
    }


# --- environments --------------------------------------------------------------------------------


def riskgate_env(
    work: Path, model_dir: Path, db_url: str, state_url: str | None = None
) -> dict[str, str]:
    """RISKGATE_* for one service: the given database; Redis state if given, else SQLite."""
    env = {
        "RISKGATE_API_KEYS": KEY_SPEC,
        "RISKGATE_MODEL_DIR": str(model_dir),
        "RISKGATE_DB_URL": db_url,
        "RISKGATE_STATE_PATH": str(work / "state.db"),
        "RISKGATE_MODEL_DEADLINE_MS": DEADLINE_MS,
    }
    if state_url:
        env["RISKGATE_STATE_URL"] = state_url
    return env


def _is_service_setting(name: str) -> bool:
    """RISKGATE_* read by the service (the test-server variables are kept)."""
    return name.startswith("RISKGATE_") and not name.startswith(
        ("RISKGATE_TEST_", "RISKGATE_SERVICES_")
    )


@contextlib.contextmanager
def service_environ(env: dict[str, str]) -> Iterator[None]:
    """Set exactly `env` as the process's service settings (restored afterwards)."""
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if _is_service_setting(name):
                mp.delenv(name)
        for name, value in env.items():
            mp.setenv(name, value)
        yield


# --- real servers ---------------------------------------------------------------------------------


@dataclass
class Replica:
    """One `riskgate serve` process on 127.0.0.1 (its workers are found by PID via psutil)."""

    name: str
    port: int
    env: dict[str, str]
    work: Path
    proc: subprocess.Popen[bytes] | None = None
    _tick: threading.Event = field(default_factory=threading.Event)  # never set: a poll pause

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.work / "server.log"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not _is_service_setting(k)}
        env.update(self.env)
        env["BENTOML_HOME"] = str(self.work / "bentoml")
        env["BENTOML_DO_NOT_TRACK"] = "true"
        riskgate = Path(sys.executable).parent / "riskgate"
        command = [str(riskgate)] if riskgate.exists() else [sys.executable, "-m", "serving.cli"]
        argv = [*command, "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                argv,
                env=env,
                cwd=self.work,  # nothing lands in the project
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """GET /readyz until 200; bounded in time and count, stops early if the process died."""
        import httpx

        deadline = time.monotonic() + timeout_s
        with httpx.Client(base_url=self.base, timeout=2.0) as probe:
            for _ in range(int(timeout_s / POLL_S) + 1):
                if time.monotonic() > deadline or self.proc is None or self.proc.poll() is not None:
                    break
                try:
                    if probe.get("/readyz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                self._tick.wait(POLL_S)  # the poll interval (the deadline bounds the loop)
        code = None if self.proc is None else self.proc.poll()
        raise AssertionError(
            f"replica {self.name} not ready in {timeout_s:.0f}s (exit code {code}):\n"
            + log_tail(self.log)
        )

    def stop(self) -> None:
        """SIGTERM our process; SIGKILL it and any worker it left (by PID) if they linger."""
        import psutil

        if self.proc is None:
            return
        try:
            workers = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            workers = []
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT_S)
        _, alive = psutil.wait_procs(workers, timeout=STOP_TIMEOUT_S)
        for worker in alive:
            worker.kill()
        psutil.wait_procs(alive, timeout=STOP_TIMEOUT_S)


StartReplicas = Callable[..., list[Replica]]


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartReplicas]:
    """start(names, env) -> replicas started together and ready; all stopped at module end.

    `env` is the RISKGATE_* of every replica (each also gets its own work directory, hence its
    own SQLite online state when no RISKGATE_STATE_URL is given).
    """
    started: list[Replica] = []

    def start(names: list[str], env: dict[str, str]) -> list[Replica]:
        group = []
        for name in names:
            work = tmp_path_factory.mktemp(f"replica-{name}")
            replica = Replica(
                name, free_port(), {**env, "RISKGATE_STATE_PATH": str(work / "s.db")}, work
            )
            started.append(replica)
            replica.start()
            group.append(replica)
        for replica in group:  # they start in parallel; wait for each
            replica.wait_ready()
        return group

    try:
        yield start
    finally:
        errors = []
        for replica in started:
            try:
                replica.stop()
            except Exception as exc:  # stop the others anyway
                errors.append(f"{replica.name}: {exc}")
        assert not errors, f"could not stop replicas: {errors}"
