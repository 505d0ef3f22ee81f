"""`riskgate serve`: start the BentoML service on embedded defaults."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

EXAMPLE_PAYMENT = {
    "transaction_id": "demo-0001",
    "timestamp": "2024-03-30T12:00:00Z",
    "card_id": "card_demo_1",
    "customer_id": "cust_demo_1",
    "merchant_id": "merch_demo_1",
    "amount": 42.5,
    "currency": "EUR",
    "billing_country": "DE",
    "ip_country": "DE",
    "channel": "online",
    "device_id": "dev_demo_1",
    "ip_hash": "ip_demo_1",
    "auth_result": "passed",
}


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser("serve", help="start the scoring and review service (BentoML)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=3000)
    s.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes; they share the database and the online state (the SQLite log "
        "by default, Redis with RISKGATE_STATE_URL)",
    )
    s.set_defaults(func=serve)


KEEP_ALIVE_SECONDS = 75


def _keep_alive_seconds(env: dict[str, str]) -> int:
    """RISKGATE_KEEP_ALIVE_SECONDS: how long an idle client connection stays open."""
    raw = env.get("RISKGATE_KEEP_ALIVE_SECONDS", str(KEEP_ALIVE_SECONDS))
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(
            f"error: RISKGATE_KEEP_ALIVE_SECONDS must be a whole number, got {raw!r}"
        ) from None
    if not 1 <= value <= 3600:
        raise SystemExit(f"error: RISKGATE_KEEP_ALIVE_SECONDS must be 1..3600, got {value}")
    return value


def settings_errors() -> list[str]:
    """One line per RISKGATE_* value the service would refuse at start (e.g. a negative
    RISKGATE_MODEL_DEADLINE_MS): said here, before the workers start and fail one by one."""
    from pydantic import ValidationError

    from serving.core.settings import Settings

    try:
        Settings()
    except ValidationError as exc:
        return [
            f"RISKGATE_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors(include_url=False, include_input=False)
        ]
    return []


def serve(args: argparse.Namespace) -> int:
    from serving.core.auth import KeyRing, development_keys, spec_of

    env = dict(os.environ)
    keep_alive = _keep_alive_seconds(env)  # a bad value stops here, before anything starts
    refused = settings_errors()
    if refused:
        for line in refused:
            print(f"error: {line}", file=sys.stderr)
        return 2
    from sqlalchemy.exc import OperationalError

    from serving.core.settings import Settings
    from serving.http.deployment import check_before_serve
    from serving.http.startup import PREFIX, one_line

    try:
        mismatch = check_before_serve(Settings())  # stamps both stores at the first start
    except OperationalError as exc:  # the decision store: the same one line a worker would give
        text = f"RISKGATE_DB_URL: the database cannot be opened ({exc.orig})"
        print(PREFIX + one_line(text), file=sys.stderr, flush=True)
        return 3
    if mismatch is not None:
        print(f"error: {mismatch}", file=sys.stderr)
        return 2
    env.setdefault("BENTOML_HOME", str(Path(".riskgate/bentoml").resolve()))
    env.setdefault("BENTOML_DO_NOT_TRACK", "true")
    if not env.get("RISKGATE_API_KEYS"):
        keys = development_keys()
        env["RISKGATE_API_KEYS"] = spec_of(keys)
        print("RISKGATE_API_KEYS is not set: development keys for this run only:")
        for role, key in keys.items():
            print(f"  {role:<9} {key}")
        backend_key = keys["backend"]
        reviewer_key = keys["reviewer"]
    else:
        try:
            KeyRing.parse(env["RISKGATE_API_KEYS"])
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        backend_key = "$BACKEND_KEY"
        reviewer_key = "$REVIEWER_KEY"
    base = f"http://{args.host}:{args.port}"
    print(
        "\nScore a payment:\n"
        f"  curl -s {base}/score -H 'Authorization: Bearer {backend_key}' \\\n"
        f"       -H 'Content-Type: application/json' -H 'Idempotency-Key: demo-0001' \\\n"
        f"       -d '{json.dumps(EXAMPLE_PAYMENT)}'\n"
        f"Reviewers: {base}/console  (sign in with the reviewer key {reviewer_key})\n"
        f"Operators: {base}/readyz  {base}/metrics  API docs: {base}/docs.json\n",
        flush=True,
    )
    bentoml = shutil.which("bentoml", path=str(Path(sys.executable).parent)) or "bentoml"
    argv = [
        bentoml,
        "serve",
        "serving.http.service:Riskgate",
        "--host",
        args.host,
        "--port",
        str(args.port),
        # Payment backends keep pooled connections; uvicorn's 5 s default closed them between
        # bursts (and under load, mid-sequence). 75 s, as nginx and common client pools expect.
        "--timeout-keep-alive",
        str(keep_alive),
    ]
    env["RISKGATE_WORKERS"] = str(args.workers)
    # exec keeps this PID: the workers die with the process that has it (see
    # serving.http.service.die_with_parent)
    env["RISKGATE_SERVER_PID"] = str(os.getpid())
    os.execvpe(argv[0], argv, env)
    return 0  # not reached
