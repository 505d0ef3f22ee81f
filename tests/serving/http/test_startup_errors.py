"""A start-up error ends the server at once, non-zero, with one line naming the setting.

Real processes: plain `bentoml serve serving.service:Riskgate` (BentoML's process manager used to
respawn the failing worker forever) and `riskgate serve`. The subprocess timeout is a bound on a
hung server, not a timing assertion.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from serving.http.startup import PREFIX, StartupError, check_settings

BOUND_S = 180  # a respawn loop never exits: the bound turns it into a failure


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKGATE_")}
    env.update(
        BENTOML_HOME=str(tmp_path / "bentoml"),
        BENTOML_DO_NOT_TRACK="true",
        MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path}/mlflow.db",
        RISKGATE_STATE_PATH=str(tmp_path / "state.db"),
        RISKGATE_DB_URL=f"sqlite:///{tmp_path}/riskgate.db",
    )
    env.update(extra)
    return env


def _run(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=BOUND_S
        )
    except subprocess.TimeoutExpired as exc:  # pragma: no cover - the bug this test guards
        pytest.fail(f"the server did not exit on a start-up error: {exc.stdout!r}")


def _our_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(PREFIX)]


def test_plain_bentoml_serve_without_api_keys_exits_2_with_one_line(tmp_path: Path):
    bentoml = shutil.which("bentoml", path=str(Path(sys.executable).parent))
    assert bentoml is not None
    argv = [bentoml, "serve", "serving.service:Riskgate", "--host", "127.0.0.1", "--port", "9"]
    done = _run(argv, _env(tmp_path), tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = _our_lines(done.stderr)
    assert len(lines) == 1, done.stderr
    assert "RISKGATE_API_KEYS is not set" in lines[0]
    assert "Traceback" not in done.stderr + done.stdout
    assert "initialized" not in done.stdout  # no worker was started


def test_riskgate_serve_with_an_unreachable_database_exits_3_with_one_line(tmp_path: Path):
    """Only a worker can find this one: it reports, the server stops, nothing respawns."""
    env = _env(
        tmp_path,
        RISKGATE_API_KEYS="backend:backend-key-0123456789abcdef",
        RISKGATE_DB_URL="postgresql+psycopg://riskgate@127.0.0.1:9/riskgate",  # discard port
    )
    argv = [sys.executable, "-m", "serving.cli", "serve", "--host", "127.0.0.1", "--port", "0"]
    done = _run(argv, env, tmp_path)
    assert done.returncode == 3, done.stdout + done.stderr
    lines = _our_lines(done.stderr)
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(PREFIX + "RISKGATE_DB_URL: the database cannot be opened")
    assert "Traceback" not in done.stderr + done.stdout


def test_a_setting_that_does_not_parse_is_named(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("RISKGATE_API_KEYS", "backend:backend-key-0123456789abcdef")
    monkeypatch.setenv("RISKGATE_SCORE_GROUP_MAX", "0")
    with pytest.raises(StartupError, match=r"^RISKGATE_SCORE_GROUP_MAX: "):
        check_settings()


def test_malformed_api_keys_are_named(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("RISKGATE_API_KEYS", "emperor:backend-key-0123456789abcdef")
    with pytest.raises(StartupError, match="RISKGATE_API_KEYS entry 1: unknown role"):
        check_settings()
