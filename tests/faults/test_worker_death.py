"""Finding 2 (issue 15): `kill -9` of the `riskgate serve` process group left the workers
serving (BentoML's process manager starts each worker in a session of its own, so the group
signal never reaches them) and holding the port, so a restart could not come up. Workers must
die with their parent: the port is free within 5 s and a restart serves again.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from pathlib import Path

import psutil
import pytest

from tests.faults.conftest import riskgate_env
from tests.servers import Server, free_port

pytestmark = pytest.mark.slow

PORT_FREE_S = 5.0


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_kill9_of_the_serve_group_takes_the_workers_down(tmp_path: Path, fault_model_dir: Path):
    server = Server(
        port=free_port(),
        env=riskgate_env(tmp_path, fault_model_dir),
        work=tmp_path,
        log=tmp_path / "server.log",
        args=("--workers", "2"),
    )
    server.start()
    pids: list[int] = []
    try:
        server.wait_ready()
        assert server.proc is not None
        pids = [p.pid for p in server.tree()]
        assert len(pids) >= 3, pids  # the manager and two workers
        os.killpg(os.getpgid(server.proc.pid), signal.SIGKILL)  # `kill -9 -PGID`
        server.proc.wait(timeout=10)
        deadline = time.monotonic() + PORT_FREE_S
        tick = threading.Event()
        while not port_free(server.port) and time.monotonic() < deadline:
            tick.wait(0.1)
        survivors = [pid for pid in pids[1:] if psutil.pid_exists(pid)]
        alive = [pid for pid in survivors if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
        assert port_free(server.port), f"port still held {PORT_FREE_S}s later by {alive}"
        assert not alive, f"workers still running after their parent was killed: {alive}"
        server.start()  # the restart after the crash comes up on the same port
        server.wait_ready()
    finally:
        for pid in pids:  # whatever the fix did not take down (ours, by PID)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        server.stop()
