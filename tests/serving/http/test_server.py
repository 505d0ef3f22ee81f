"""The real server: `riskgate serve` as a subprocess on 127.0.0.1, driven over HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import free_port, log_tail
from tests.serving.helpers import (
    BACKEND,
    KEY_SPEC,
    REVIEWER,
    high_risk,
    low_risk,
)

pytestmark = pytest.mark.slow

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
POLL_S = 0.2


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server we started; SIGKILL it, and any worker it left, if they do not exit.

    `riskgate serve` execs `bentoml serve` in the same process (our child's PID), which starts
    its service workers as child processes: they are found by PID from the process tree.
    """
    import psutil

    try:
        workers = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        workers = []
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT_S)
    _, alive = psutil.wait_procs(workers, timeout=STOP_TIMEOUT_S)
    for worker in alive:
        worker.kill()
    psutil.wait_procs(alive, timeout=STOP_TIMEOUT_S)


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    work = tmp_path_factory.mktemp("server")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKGATE_")}
    env.update(
        RISKGATE_API_KEYS=KEY_SPEC,
        RISKGATE_MODEL_DIR=str(model_dir),
        RISKGATE_DB_URL=f"sqlite:///{work / 'riskgate.db'}",
        RISKGATE_STATE_PATH=str(work / "state.db"),
        RISKGATE_MODEL_DEADLINE_MS="5000",
        BENTOML_HOME=str(work / "bentoml"),
        BENTOML_DO_NOT_TRACK="true",
    )
    riskgate = Path(sys.executable).parent / "riskgate"
    argv = [str(riskgate), "serve", "--host", "127.0.0.1", "--port", str(port)]
    log = work / "server.log"
    base = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, env=env, cwd=work, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        ready = False
        with httpx.Client(base_url=base, timeout=2.0) as probe:
            for _ in range(int(READY_TIMEOUT_S / POLL_S) + 1):  # bounded in count and time
                if proc.poll() is not None or time.monotonic() > deadline:
                    break
                try:
                    ready = probe.get("/readyz").status_code == 200
                except httpx.TransportError:
                    ready = False
                if ready:
                    break
                time.sleep(POLL_S)  # poll interval while waiting for readiness
        if not ready:
            pytest.fail(
                f"server not ready in {READY_TIMEOUT_S:.0f}s (exit code {proc.poll()}):\n"
                + log_tail(log)
            )
        yield base
    finally:
        stop(proc)


@pytest.fixture
def http(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=30.0) as c:
        yield c


def test_server_is_ready_with_the_local_model(http):
    assert http.get("/readyz").status_code == 200
    assert http.get("/healthz").status_code == 200


def test_server_approves_a_low_risk_payment_and_holds_a_high_risk_one(http):
    low = http.post("/score", json=low_risk("srv-low"), headers=BACKEND)
    high = http.post("/score", json=high_risk("srv-high"), headers=BACKEND)

    assert low.status_code == 200, low.text
    assert (low.json()["decision"], low.json()["status"]) == ("approve", "settled")
    assert low.json()["decision_source"] == "model"
    assert high.status_code == 200, high.text
    assert (high.json()["decision"], high.json()["status"]) == ("review", "held_for_review")
    case_id = high.json()["case_id"]
    case = http.get(f"/cases/{case_id}", headers=REVIEWER)
    assert case.status_code == 200, case.text
    assert case.json()["transaction_id"] == "txn-srv-high"
    assert case.json()["reasons"], "the stored case must carry its reasons"
    assert case.json()["reasons"] == high.json()["reasons"]
    status = http.get("/payments/txn-srv-low", headers=BACKEND).json()
    assert status["status"] == "settled"


def test_server_refuses_missing_keys_and_wrong_roles(http):
    assert http.post("/score", json=low_risk("srv-auth")).status_code == 401
    assert http.post("/score", json=low_risk("srv-auth"), headers=REVIEWER).status_code == 403
    assert http.get("/cases", headers=BACKEND).status_code == 403
    assert http.get("/cases").status_code == 401
    assert http.get("/payments/txn-srv-auth", headers=BACKEND).status_code == 404


def test_server_replays_an_idempotent_retry(http):
    headers = {**BACKEND, "Idempotency-Key": "srv-key-1"}
    first = http.post("/score", json=high_risk("srv-idem"), headers=headers)
    again = http.post("/score", json=high_risk("srv-idem"), headers=headers)
    other = http.post("/score", json=low_risk("srv-idem-2"), headers=headers)

    assert first.status_code == again.status_code == 200
    assert again.json() == {**first.json(), "replayed": True}
    assert other.status_code == 422
    listed = http.get("/cases", headers=REVIEWER, params={"status": "all", "limit": 500}).json()
    assert [c["transaction_id"] for c in listed["items"]].count("txn-srv-idem") == 1


def test_server_exports_decision_metrics(http):
    assert http.post("/score", json=low_risk("srv-metrics"), headers=BACKEND).status_code == 200

    metrics = http.get("/metrics")

    assert metrics.status_code == 200
    assert "riskgate_decisions_total" in metrics.text
    assert 'decision="approve"' in metrics.text
