"""The real service (`riskgate serve`) with a small model, seeded cases, and one Chromium.

The server is started once per module as a child process on 127.0.0.1 and stopped by its PID;
the browser is Debian's Chromium driven by Playwright (Playwright's own download is not used).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[4]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
START_TIMEOUT_S = 60.0

# Keys are at least 16 characters; the middle part of a reviewer entry is the reviewer's name.
BACKEND_KEY = "console-backend-key-000001"
ALICE_KEY = "console-alice-key-00000001"
BOB_KEY = "console-bob-key-0000000001"
ADMIN_KEY = "console-admin-key-00000001"
CAROL_KEY = "console-carol-key-00000001"  # supervisor
API_KEYS = (
    f"backend:{BACKEND_KEY},reviewer:alice:{ALICE_KEY},reviewer:bob:{BOB_KEY},admin:{ADMIN_KEY},"
    f"supervisor:carol:{CAROL_KEY}"
)

# (amount, ip_country, auth_result): distinct amounts, some with the IP abroad, so the payments
# get distinct probabilities and priorities (probability x amount).
SEED = [
    (1840.00, "NG", "failed"),
    (1260.50, "DE", "passed"),
    (975.25, "BR", "not_attempted"),
    (640.00, "DE", "not_attempted"),
    (512.80, "RU", "failed"),
    (388.10, "DE", "passed"),
    (245.00, "US", "not_attempted"),
    (199.99, "DE", "failed"),
    (150.40, "CN", "passed"),
    (120.00, "DE", "not_attempted"),
    (89.90, "VN", "failed"),
    (64.00, "DE", "passed"),
    (42.00, "DE", "not_attempted"),
    (31.50, "ID", "passed"),
]


@dataclass(frozen=True)
class Server:
    """A running service: its base URL and an HTTP client per role."""

    url: str
    log: Path
    transaction_ids: tuple[str, ...]

    def client(self, key: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=10.0
        )

    def get(self, key: str, path: str, **params: Any) -> Any:
        with self.client(key) as c:
            r = c.get(path, params=params)
        assert r.status_code == 200, f"GET {path}: {r.status_code} {r.text}"
        return r.json()

    def post(self, key: str, path: str, body: Any = None) -> httpx.Response:
        with self.client(key) as c:
            return c.post(path, json=body)

    def open_cases(self) -> list[dict[str, Any]]:
        """Open cases in queue order, as the API gives them to reviewers."""
        return self.get(ALICE_KEY, "/cases", status="open", limit=200)["items"]


@pytest.fixture(scope="session")
def review_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real model whose thresholds send every payment to review.

    The trained thresholds would settle most seeded payments at once, and which ones depends on
    the model; with review = 0.0 (every probability is >= 0) and decline = 1.01 (no probability
    reaches it), each payment scored becomes an open case, so the queue's content is known. The
    probabilities, scores and SHAP reasons are still the real model's.
    """
    from data.simulator import SimulationConfig, simulate
    from training.config import SearchSettings, TrainConfig
    from training.model import Thresholds
    from training.pipeline import train

    result = train(
        simulate(SimulationConfig(rows=40_000, days=60)),
        TrainConfig(search=SearchSettings(trials=1)),
    )
    model = dataclasses.replace(result.model, thresholds=Thresholds(review=0.0, decline=1.01))
    return model.save(tmp_path_factory.mktemp("console-model") / "model")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _descendants(pid: int) -> list[int]:
    """PIDs of pid's children, grandchildren, ... (Linux /proc), so none outlives the server."""
    found: list[int] = []
    todo = [pid]
    while todo:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                if child not in found:
                    found.append(child)
                    todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's PID (BentoML stops its workers), then SIGKILL what is left."""
    workers = _descendants(proc.pid)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    for pid in workers:
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            r = httpx.get(f"{url}/readyz", timeout=2.0)
            if r.status_code == 200:
                return
            last = f"{r.status_code} {r.text[:200]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.2)  # polling interval under a deadline, not a timing assumption
    pytest.fail(f"server not ready in {START_TIMEOUT_S:.0f}s ({last}):\n{log.read_text()[-4000:]}")


def payment(i: int, amount: float, ip_country: str, auth: str, at: datetime) -> dict[str, Any]:
    return {
        "transaction_id": f"console-tx-{i:03d}",
        "timestamp": at.isoformat().replace("+00:00", "Z"),
        "card_id": f"card_console_{i:03d}",
        "customer_id": f"cust_console_{i:03d}",
        "merchant_id": f"merch_console_{i % 4}",
        "amount": amount,
        "currency": "EUR",
        "billing_country": "DE",
        "ip_country": ip_country,
        "merchant_country": "DE" if i % 3 else "FR",
        "mcc": "5732",
        "channel": "online",
        "customer_lat": 52.52,
        "customer_lon": 13.40,
        "merchant_lat": 48.86 if i % 3 == 0 else 50.11,
        "merchant_lon": 2.35 if i % 3 == 0 else 8.68,
        "device_id": f"dev_console_{i:03d}",
        "ip_hash": f"ip_console_{i:03d}",
        "email_domain": "example.com",
        "auth_result": auth,
    }


@pytest.fixture(scope="module")
def server(review_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`riskgate serve` on a free local port, with one open case per seeded payment."""
    tmp = tmp_path_factory.mktemp("console-server")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "RISKGATE_API_KEYS": API_KEYS,
        "RISKGATE_MODEL_DIR": str(review_model_dir),
        "RISKGATE_DB_URL": f"sqlite:///{tmp / 'rg.db'}",
        "RISKGATE_STATE_PATH": str(tmp / "state.db"),
        "BENTOML_HOME": str(tmp / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
    }
    for name in ("RISKGATE_POLICY_FILE", "RISKGATE_WEBHOOK_URL", "RISKGATE_WORKERS"):
        env.pop(name, None)
    log = tmp / "server.log"
    argv = [sys.executable, "-m", "serving.cli", "serve", "--host", "127.0.0.1", "--port"]
    argv.append(str(port))
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_ready(proc, url, log)
        now = datetime.now(UTC).replace(microsecond=0)
        ids = []
        with httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {BACKEND_KEY}"}, timeout=10.0
        ) as c:
            for i, (amount, ip, auth) in enumerate(SEED):
                at = now - timedelta(minutes=len(SEED) - i)
                r = c.post("/score", json=payment(i, amount, ip, auth, at))
                assert r.status_code == 200, r.text
                body = r.json()
                assert body["decision"] == "review", body
                assert body["status"] == "held_for_review", body
                ids.append(body["transaction_id"])
        yield Server(url, log, tuple(ids))
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any, server: Server) -> Iterator[Any]:
    """A fresh tab (own sessionStorage) per test, on a wide enough window for the two columns."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=server.url)
    context.set_default_timeout(10_000)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield pg
    finally:
        context.close()
    assert not errors, f"JavaScript errors in the console: {errors}"


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
