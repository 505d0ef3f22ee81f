"""A real `riskgate serve` on 127.0.0.1 for the tests: start, wait, kill -9, stop (shared by
the serving, scale and fault suites).

`riskgate serve` execs `bentoml serve` in our child process, which starts the service worker as
its child in a session of its own: the tree is found by PID (psutil), never by process name.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
POLL_S = 0.1


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class Server:
    """One `riskgate serve` process (and, through psutil, its worker children)."""

    port: int
    env: dict[str, str]
    work: Path
    log: Path
    args: tuple[str, ...] = ()  # more `riskgate serve` options, e.g. ("--workers", "2")
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    _tick: threading.Event = field(default_factory=threading.Event)  # never set: a poll pause

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RISKGATE_")}
        env.update(self.env)
        env["BENTOML_HOME"] = str(self.work / "bentoml")
        env["BENTOML_DO_NOT_TRACK"] = "true"
        argv = [sys.executable, "-m", "serving.cli", "serve"]
        argv += ["--host", "127.0.0.1", "--port", str(self.port), *self.args]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                argv,
                env=env,
                cwd=self.work,  # nothing lands in the project (serving is installed)
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.starts += 1

    def tree(self) -> list[psutil.Process]:
        """Our server process and all its descendants (by PID)."""
        if self.proc is None:
            return []
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def poll_until(self, path: str, status: int, timeout_s: float) -> float | None:
        """GET `path` until it answers `status`; seconds it took, or None at the deadline.

        Bounded in time and count; stops early if our server process exited.
        """
        started = time.monotonic()
        deadline = started + timeout_s
        with httpx.Client(base_url=self.base, timeout=2.0) as probe:
            for _ in range(int(timeout_s / POLL_S) + 1):
                if time.monotonic() > deadline or self.proc is None or self.proc.poll() is not None:
                    return None
                try:
                    if probe.get(path).status_code == status:
                        return time.monotonic() - started
                except httpx.TransportError:
                    pass
                self._tick.wait(POLL_S)  # the poll interval (the deadline bounds the loop)
        return None

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> float:
        took = self.poll_until("/readyz", 200, timeout_s)
        if took is None:
            code = None if self.proc is None else self.proc.poll()
            raise AssertionError(
                f"server not ready in {timeout_s:.0f}s (exit code {code}):\n{log_tail(self.log)}"
            )
        return took

    def kill9(self) -> list[int]:
        """SIGKILL the whole tree (root first, so it cannot restart its workers); the PIDs."""
        procs = self.tree()
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGKILL)
        _, alive = psutil.wait_procs(procs, timeout=STOP_TIMEOUT_S)
        assert not alive, f"still alive after SIGKILL: {[p.pid for p in alive]}"
        if self.proc is not None:
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        return [p.pid for p in procs]

    def stop(self) -> None:
        """SIGTERM our server; SIGKILL it and any worker it left if they do not exit in time."""
        procs = self.tree()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT_S)
        _, alive = psutil.wait_procs(procs[1:], timeout=STOP_TIMEOUT_S)
        for p in alive:
            p.kill()
        psutil.wait_procs(alive, timeout=STOP_TIMEOUT_S)


def same_features(a: dict[str, float | None], b: dict[str, float | None]) -> bool:
    """Equal names; each value equal to 1e-9 relative, or unknown (None: NaN) in both."""
    import pytest

    if a.keys() != b.keys():
        return False
    for name, x in a.items():
        y = b[name]
        if (x is None) != (y is None):
            return False
        if x is not None and x != pytest.approx(y, rel=1e-9, abs=1e-12):
            return False
    return True
