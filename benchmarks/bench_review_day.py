"""A simulated review day through a real server: the team lead's numbers at the end of it.

    python benchmarks/bench_review_day.py [--rows 40000] [--days 30] [--out FILE]

Simulated payments (`data.simulator`); a model trained on all days but the last; `riskgate
serve` on 127.0.0.1 (a free port) with routed queues (`big` from 500, locked; `fallback`), four
eyes above 2,000, and the last day's payments sent through `/score_batch`. Two reviewers (alice,
bob) work the queues through `POST /queues/{name}/next` and decide by the simulated truth, wrong
one time in ten (seeded); a supervisor (carol) confirms the four-eyes proposals. Then the
backend sends the later labels (`POST /labels`: chargebacks for fraud, genuine for the rest)
and `GET /review/stats` gives the day. Decisions are immediate, so times to decision are
seconds. Prints the stats; `--out` writes them as JSON. Not a test.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import Server, free_port, make_frame, payment_dicts, say

KEYS = {
    "backend": "day-backend-key-000000001",
    "alice": "day-alice-key-0000000001",
    "bob": "day-bob-key-000000000001",
    "carol": "day-carol-key-0000000001",
    "admin": "day-admin-key-0000000001",
}
SPEC = (
    f"backend:{KEYS['backend']},reviewer:alice:{KEYS['alice']},reviewer:bob:{KEYS['bob']},"
    f"supervisor:carol:{KEYS['carol']},admin:{KEYS['admin']}"
)
QUEUES = {
    "big": {"sla_minutes": 30, "mode": "locked", "match": {"min_amount": 500}},
    "fallback": {"sla_minutes": 10, "match": {"source": "fallback"}},
}


def _client(url: str, who: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEYS[who]}"}, timeout=60)


def run(rows: int, days: int, seed: int, work: Path) -> dict[str, Any]:
    from training.config import SearchSettings, TrainConfig
    from training.pipeline import train

    frame = make_frame(rows, days, seed)
    last_day = frame["timestamp"].dt.floor("D").max()
    history, today = frame[frame["timestamp"] < last_day], frame[frame["timestamp"] >= last_day]
    say(f"training on {len(history):,} payments; the day has {len(today):,}")
    model_dir = train(history, TrainConfig(search=SearchSettings(trials=1))).model.save(
        work / "model"
    )
    truth = dict(zip(today["transaction_id"], today["is_fraud"].astype(bool), strict=True))

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **__import__("os").environ,
        "RISKGATE_API_KEYS": SPEC,
        "RISKGATE_MODEL_DIR": str(model_dir),
        "RISKGATE_DB_URL": f"sqlite:///{work / 'rg.db'}",
        "RISKGATE_STATE_PATH": str(work / "state.db"),
        "RISKGATE_FOUR_EYES_AMOUNT": "2000",
        "BENTOML_HOME": str(work / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
    }
    argv = [sys.executable, "-m", "serving.cli", "serve", "--host", "127.0.0.1", "--port"]
    server = Server("riskgate", [*argv, str(port)], env, work / "server.log")
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        else:
            raise RuntimeError(f"server not ready:\n{server.tail()}")
        with _client(url, "carol") as carol:
            for name, body in QUEUES.items():
                carol.put(f"/queues/{name}", json=body).raise_for_status()
        with _client(url, "backend") as backend:
            payments = payment_dicts(today)
            for i in range(0, len(payments), 500):
                backend.post("/score_batch", json={"payments": payments[i : i + 500]})
        rng = random.Random(seed)
        decided = proposals = 0
        with _client(url, "alice") as alice, _client(url, "bob") as bob:
            queues = [q["name"] for q in alice.get("/queues").json()["queues"]]
            reviewers = [alice, bob]
            for name in queues:
                if name == "supervisors":
                    continue
                while True:
                    who = reviewers[decided % 2]
                    got = who.post(f"/queues/{name}/next")
                    if got.status_code == 404:
                        break
                    got.raise_for_status()
                    case = got.json()["case"]
                    fraud = truth.get(case["transaction_id"], False)
                    if rng.random() < 0.1:
                        fraud = not fraud  # the reviewer is wrong one time in ten
                    decision = "decline_fraud" if fraud else "approve"
                    r = who.post(f"/cases/{case['id']}/decision", json={"decision": decision})
                    r.raise_for_status()
                    decided += 1
                    proposals += bool(r.json().get("pending_confirmation"))
        with _client(url, "carol") as carol:
            pending = carol.get("/cases", params={"limit": 500}).json()["items"]
            for c in pending:
                if c["pending_decision"]:
                    carol.post(f"/cases/{c['id']}/confirm", json={"agree": True}).raise_for_status()
        with _client(url, "backend") as backend:
            for c in (
                _client(url, "admin")
                .get("/cases/export", params={"format": "json"})
                .json()["cases"]
            ):
                if c["status"] == "decided":
                    body = {
                        "transaction_id": c["transaction_id"],
                        "is_fraud": truth[c["transaction_id"]],
                    }
                    backend.post("/labels", json=body)
        with _client(url, "carol") as carol:
            stats = carol.get("/review/stats", params={"days": 1}).json()
        return {
            "payments": len(today),
            "fraud": int(sum(truth.values())),
            "decided": decided,
            "four_eyes_proposals": proposals,
            "stats": stats,
        }
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=40_000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="riskgate-review-day-") as tmp:
        result = run(a.rows, a.days, a.seed, Path(tmp))
    s = result["stats"]
    print(
        f"payments {result['payments']:,}, fraud {result['fraud']}, cases decided "
        f"{result['decided']} (four-eyes proposals {result['four_eyes_proposals']})"
    )
    cols = ("decided", "median_seconds", "p90_seconds", "sla_breaches", "approved_share")
    for kind, key in (("by_queue", "queue"), ("by_reviewer", "reviewer")):
        for g in s[kind]:
            vals = ", ".join(f"{c} {g[c]:.3g}" if g[c] is not None else f"{c} -" for c in cols)
            judged = f"accuracy {g['accuracy']} of {g['labelled']} labelled"
            print(
                f"{kind[3:]} {g[key]} ({g['day']}): {vals}, {judged}, lost {g['lost_amount']:.2f}"
            )
    o = s["outlook"]
    ahead = f"demand {o['demand_total']:.1f}, supply {o['supply_total']:.1f}"
    print(f"outlook: backlog {o['backlog_total']}, {ahead}")
    if a.out:
        a.out.write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
