"""Start-up errors end the server at once, non-zero, with one line naming what to fix.

BentoML builds the service in each worker; a worker whose `__init__` raises is logged with two
tracebacks and respawned by the process manager (circus) forever, so a missing setting under a
plain `bentoml serve serving.service:Riskgate` meant hundreds of restarts and a `/readyz` that
never answered. Two guards, whichever way the service is started (`riskgate serve`, `bentoml
serve` of the module or of a built Bento):

- `preflight()` runs in the server process before any worker is spawned (BentoML's
  `@bentoml.on_deployment` hook): settings that do not parse and missing or malformed
  `RISKGATE_API_KEYS` stop it there (exit 2).
- What only a worker can find (the database cannot be opened, the policy file is unreadable, ...)
  goes through `worker_failed()`: the worker writes its one line to a report file the server
  process created, asks the server to stop (SIGTERM to its parent) and exits without respawn
  noise; the server process, on its way out, prints the line and exits 3.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import tempfile
from pathlib import Path

from pydantic import ValidationError

from serving.core.auth import KeyRing

REPORT_ENV = "RISKGATE_STARTUP_REPORT"  # set by the server process for its workers (internal)
PREFIX = "riskgate: cannot start: "
EXIT_CONFIG = 2
EXIT_WORKER = 3


class StartupError(Exception):
    """A start-up problem an operator fixes; the message names the setting."""


def _setting_name(loc: tuple[object, ...]) -> str:
    return "RISKGATE_" + str(loc[0]).upper() if loc else "RISKGATE_*"


def check_settings() -> None:
    """The settings parse and hold the API keys; raises StartupError naming the variable."""
    from serving.core.settings import Settings

    try:
        settings = Settings()
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        raise StartupError(f"{_setting_name(tuple(first['loc']))}: {first['msg']}") from None
    if not settings.api_keys:
        raise StartupError(
            "RISKGATE_API_KEYS is not set (role[:name]:KEY,...; `riskgate serve` prints "
            "development keys when it is unset)"
        )
    try:
        KeyRing.parse(settings.api_keys)
    except ValueError as exc:
        raise StartupError(str(exc)) from None


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def preflight() -> None:
    """In the server process, before the workers: refuse to start on a bad configuration, and
    arrange for a worker's start-up failure to end this process non-zero."""
    try:
        check_settings()
    except StartupError as exc:
        print(PREFIX + one_line(str(exc)), file=sys.stderr, flush=True)
        os._exit(EXIT_CONFIG)  # before circus and BentoML set up anything to unwind
    fd, path = tempfile.mkstemp(prefix="riskgate-startup-", suffix=".txt")
    os.close(fd)
    os.environ[REPORT_ENV] = path  # the watchers copy this process's environment
    atexit.register(_exit_with_report, path)


def _exit_with_report(path: str) -> None:
    report = Path(path)
    try:
        text = report.read_text().strip()
        report.unlink()
    except OSError:
        return
    if text:
        print(PREFIX + text.splitlines()[0], file=sys.stderr, flush=True)
        os._exit(EXIT_WORKER)


def worker_failed(exc: BaseException) -> None:
    """In a worker whose start-up raised: report once, stop the server, exit (no respawn loop).

    Without a report file (the service is not under a BentoML server: tests, in-process) it
    only returns, and the caller re-raises."""
    path = os.environ.get(REPORT_ENV)
    if not path or not Path(path).exists():
        return
    line = one_line(str(exc) if isinstance(exc, StartupError) else f"{type(exc).__name__}: {exc}")
    try:
        with open(path, "a") as report:
            report.write(line + "\n")
    except OSError:
        print(PREFIX + line, file=sys.stderr, flush=True)
    os.kill(os.getppid(), signal.SIGTERM)  # circus' arbiter: stops every watcher and returns
    os._exit(EXIT_WORKER)
