"""What one payment costs inside the process: `Scorer.score` end to end and per stage, the model
alone, the explanation, the durable write (prebuilt statements, bare sqlite3), a cProfile."""

from __future__ import annotations

import contextlib
import cProfile
import io
import json
import pstats
import sqlite3
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from common import BACKEND_KEY, KEY_SPEC, copy_state, ms_stats, profile_rows

DECIDE_ONLY = "  decide without the explanation (issue 19)"


@contextlib.contextmanager
def stage_timers(rt: Any) -> Iterator[tuple[dict[str, list[float]], list[np.ndarray]]]:
    """Wrap the scorer's stages (instance / module attributes, restored after) and time them."""
    import serving.scoring.explain as explain_mod
    import serving.scoring.fresh as fresh_mod
    import serving.scoring.scorer as scorer_mod

    times: dict[str, list[float]] = defaultdict(list)
    rows: list[np.ndarray] = []
    undo: list[Callable[[], None]] = []
    missing: list[str] = []

    explaining = [0.0]  # seconds spent explaining inside the current `one` call

    def wrap(obj: Any, name: str, label: str, capture: bool = False, explain: bool = False) -> None:
        orig = getattr(obj, name, None)
        if orig is None:  # the code moved on: time what is still there
            missing.append(name)
            return
        had = name in getattr(obj, "__dict__", {})
        decide = name == "one"

        def timed(*args: Any, **kwargs: Any) -> Any:
            if decide:
                explaining[0] = 0.0
            t = time.perf_counter()
            try:
                out = orig(*args, **kwargs)
            finally:
                took = time.perf_counter() - t
                times[label].append(took)
                if explain:
                    explaining[0] += took
                elif decide:  # the measure: features + model + policy, no explanation
                    times[DECIDE_ONLY].append(took - explaining[0])
            if capture:
                rows.append(np.array(out, dtype=np.float64))
            return out

        setattr(obj, name, timed)
        undo.append(lambda: setattr(obj, name, orig) if had else delattr(obj, name))

    scorer = rt.scorer
    online = rt.holder.current.online
    model = rt.holder.current.model
    wrap(scorer_mod, "body_hash", "request hash (sha256 of JSON)")
    wrap(scorer.replays, "replay", "replay check (DB read)")
    wrap(scorer.fresh, "one", "decide (features+model+policy+explain)")
    wrap(fresh_mod, "prepare", "  prepare payment")
    wrap(online, "compute", "  features (online compute)", capture=True)
    wrap(scorer.fresh, "_predict", "  model via deadline pool (_predict)")
    wrap(scorer.fresh, "finish", "  policy+capacity+explain+body (finish)")
    wrap(fresh_mod, "decide", "  policy")
    wrap(model, "contributions", "  explain: contributions (reviewed only)", explain=True)
    wrap(explain_mod, "all_factors", "  explain: all_factors text (reviewed only)", explain=True)
    wrap(explain_mod, "reasons", "  explain: reasons text (reviewed only)", explain=True)
    wrap(scorer.writer, "write", "durable write (decision+audit[+case])")
    wrap(online, "update", "state update (SQLite event log)")
    try:
        yield times, rows
        if missing:
            times["(not found: " + ", ".join(missing) + ")"] = []
    finally:
        for u in reversed(undo):
            u()


def inprocess(
    model_dir: Path, state_src: Path, payments: list[dict[str, Any]], work: Path, n: int
) -> dict[str, Any]:
    from serving.core.auth import KeyRing
    from serving.core.schemas import PaymentIn
    from serving.core.settings import Settings
    from serving.http.runtime import build

    d = work / "inproc"
    copy_state(state_src, d / "state.db")
    settings = Settings(
        api_keys=KEY_SPEC,
        db_url=f"sqlite:///{d / 'riskgate.db'}",
        state_path=str(d / "state.db"),
        model_dir=str(model_dir),
    )
    t = time.perf_counter()
    rt = build(settings, KeyRing.parse(KEY_SPEC))
    build_s = time.perf_counter() - t
    try:
        who = rt.keys.authenticate(f"Bearer {BACKEND_KEY}")
        n_profile = max(n // 3, 500)
        need = 3 * n + n_profile
        if len(payments) < need:
            raise ValueError(f"in-process needs {need} payments, has {len(payments)}")
        validate_s: list[float] = []
        models = []
        for p in payments[:need]:
            t = time.perf_counter()
            models.append(PaymentIn.model_validate(p))
            validate_s.append(time.perf_counter() - t)

        # A: the headline figure, nothing wrapped.
        decisions: Counter[str] = Counter()
        total: list[float] = []
        total_cpu: list[float] = []  # CPU time of the process (all threads): immune to preemption
        for pm in models[:n]:
            c, t = time.process_time(), time.perf_counter()
            status, body = rt.scorer.score(pm, who, pm.transaction_id)
            total.append(time.perf_counter() - t)
            total_cpu.append(time.process_time() - c)
            decisions[f"{status}:{body.get('decision')}"] += 1

        # B: the same work with every stage timed.
        total_b: list[float] = []
        with stage_timers(rt) as (times, rows):
            for pm in models[n : 2 * n]:
                t = time.perf_counter()
                status, body = rt.scorer.score(pm, who, pm.transaction_id)
                total_b.append(time.perf_counter() - t)
                decisions[f"{status}:{body.get('decision')}"] += 1
        stages = {k: ms_stats(v) for k, v in times.items()}
        stage_total_ms = sum(sum(v) * 1000 / n for v in times.values())
        accounted = {k: sum(v) * 1000 / n for k, v in times.items() if not k.startswith("  ")}
        unaccounted = statistics.fmean(total_b) * 1000 - sum(accounted.values())

        # The model and the explanation alone, on the feature rows just computed.
        model = rt.holder.current.model
        assert model is not None
        X = [np.ascontiguousarray(r.reshape(1, -1)) for r in rows]
        predict_s, contrib_s, explain_s = [], [], []
        from serving.scoring import explain

        names = rt.holder.current.online.names
        for x, pm in zip(X, models[n : 2 * n], strict=True):
            t = time.perf_counter()
            model.predict_proba(x)
            predict_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            model.contributions(x)
            contrib_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            record = pm.contract()
            cl = model.contributions(x)[0, :-1].tolist()
            vals = x[0].tolist()
            explain.all_factors(names, vals, cl, record)
            explain.reasons(names, vals, cl, record)
            explain_s.append(time.perf_counter() - t)

        # A': the model called inline (RISKGATE_MODEL_DEADLINE_MS=0) instead of via the pool.
        settings_pool = rt.scorer.settings
        rt.scorer.settings = settings_pool.model_copy(update={"model_deadline_ms": 0.0})
        inline: list[float] = []
        inline_cpu: list[float] = []
        try:
            for pm in models[2 * n : 3 * n]:
                c, t = time.process_time(), time.perf_counter()
                rt.scorer.score(pm, who, pm.transaction_id)
                inline.append(time.perf_counter() - t)
                inline_cpu.append(time.process_time() - c)
        finally:
            rt.scorer.settings = settings_pool

        # C: where the time goes, by function.
        prof = cProfile.Profile()
        prof.enable()
        for pm in models[3 * n : need]:
            rt.scorer.score(pm, who, pm.transaction_id)
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(25)
        top = profile_rows(prof, n_profile)
    finally:
        rt.close()
    return {
        "payments": n,
        "build_s": round(build_s, 2),
        "decisions": dict(decisions),
        "score": ms_stats(total),
        "score_while_staged": ms_stats(total_b),
        "score_inline_model": ms_stats(inline),
        "score_cpu": ms_stats(total_cpu),
        "score_inline_model_cpu": ms_stats(inline_cpu),
        "stages": stages,
        "stage_share_ms_per_payment": {k: round(v, 4) for k, v in accounted.items()},
        "unaccounted_ms_per_payment": round(unaccounted, 4),
        "stage_sum_ms": round(stage_total_ms, 4),
        "pydantic_validate": ms_stats(validate_s),
        "model_direct": ms_stats(predict_s),
        "contributions_one_row": ms_stats(contrib_s),
        "explain_full": ms_stats(explain_s),
        "profile_top": top,
        "profile_text": buf.getvalue(),
    }


def what_if_db(payments: list[dict[str, Any]], work: Path, n: int = 1_500) -> dict[str, Any]:
    """The durable write and the replay check with a statement built per call, with prebuilt
    statements and on the bare sqlite3 driver, same rows: a diagnostic for what SQLAlchemy costs
    per statement. The scorer itself runs its hot inserts and its replay probe on the driver's
    cursor (serving/store/driver.py); its own figures are the stage rows above."""
    from datetime import UTC, datetime

    from sqlalchemy import bindparam, insert, select

    from serving.core.schemas import PaymentIn
    from serving.store import db

    recs = [PaymentIn.model_validate(p).contract() for p in payments[:n]]
    body = {"decision": "approve", "decision_source": "model", "probability": 0.01, "score": 1,
            "reasons": [], "rules": [], "model_version": "local:model", "case_id": None,
            "status": "settled", "replayed": False, "review_threshold": 0.02,
            "capacity_adjusted": False, "elapsed_ms": 0.5}  # fmt: skip
    out: dict[str, Any] = {}

    def dec_row(r: dict[str, Any], now: datetime) -> dict[str, Any]:
        return dict(transaction_id=r["transaction_id"], created_at=now,
                    payment_time=r["timestamp"], decision="approve", source="model",
                    status="settled", status_at=now, probability=0.01, score=1,
                    model_version="local:model", amount=r["amount"], currency=r["currency"],
                    merchant_id=r["merchant_id"], card_id=r["card_id"],
                    response={**body, "transaction_id": r["transaction_id"]})  # fmt: skip

    def aud_row(r: dict[str, Any], now: datetime) -> dict[str, Any]:
        return dict(at=now, actor="backend", role="backend", key_id="k", action="score",
                    target=r["transaction_id"],
                    detail={"decision": "approve", "source": "model"})  # fmt: skip

    def engine_at(name: str) -> Any:
        e = db.make_engine(f"sqlite:///{work / 'whatif' / name}")
        db.create_schema(e)
        return e

    # 1. statements built per call
    e = engine_at("per_call.db")
    w, rd = [], []
    for r in recs:
        t = time.perf_counter()
        with e.connect() as conn:
            conn.execute(
                select(db.idempotency).where(db.idempotency.c.key == r["transaction_id"])
            ).first()
            conn.execute(select(db.decisions.c.response, db.decisions.c.status).where(
                db.decisions.c.transaction_id == r["transaction_id"])).first()  # fmt: skip
        rd.append(time.perf_counter() - t)
        now = datetime.now(UTC)
        t = time.perf_counter()
        with e.begin() as conn:
            conn.execute(insert(db.decisions).values(**dec_row(r, now)))
            conn.execute(insert(db.audit_log).values(**aud_row(r, now)))
        w.append(time.perf_counter() - t)
    e.dispose()
    out["per_call_statements"] = {"replay_check": ms_stats(rd), "write": ms_stats(w)}

    # 2. prebuilt statements (compiled once, SQLAlchemy's cache hit every time)
    e = engine_at("prebuilt.db")
    ins_dec, ins_aud = insert(db.decisions), insert(db.audit_log)
    sel_key = select(db.idempotency).where(db.idempotency.c.key == bindparam("k"))
    sel_dec = select(db.decisions.c.response, db.decisions.c.status).where(
        db.decisions.c.transaction_id == bindparam("t")
    )
    w, rd = [], []
    for r in recs:
        t = time.perf_counter()
        with e.connect() as conn:
            conn.execute(sel_key, {"k": r["transaction_id"]}).first()
            conn.execute(sel_dec, {"t": r["transaction_id"]}).first()
        rd.append(time.perf_counter() - t)
        now = datetime.now(UTC)
        t = time.perf_counter()
        with e.begin() as conn:
            conn.execute(ins_dec, dec_row(r, now))
            conn.execute(ins_aud, aud_row(r, now))
        w.append(time.perf_counter() - t)
    e.dispose()
    out["prebuilt_statements"] = {"replay_check": ms_stats(rd), "write": ms_stats(w)}

    # 3. the sqlite3 driver alone, one connection, JSON encoded by hand
    e = engine_at("driver.db")
    e.dispose()
    con = sqlite3.connect(work / "whatif" / "driver.db", isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    w, rd = [], []
    for r in recs:
        t = time.perf_counter()
        con.execute(
            "SELECT * FROM idempotency_keys WHERE key = ?", (r["transaction_id"],)
        ).fetchone()
        con.execute("SELECT response, status FROM decisions WHERE transaction_id = ?",
                    (r["transaction_id"],)).fetchone()  # fmt: skip
        rd.append(time.perf_counter() - t)
        now = datetime.now(UTC)
        d = dec_row(r, now)
        for c in ("created_at", "status_at", "payment_time"):
            d[c] = d[c].isoformat()
        d["response"] = json.dumps(d["response"])
        a = aud_row(r, now)
        a["at"] = now.isoformat()
        a["detail"] = json.dumps(a["detail"])
        t = time.perf_counter()
        con.execute("BEGIN")
        con.execute(f"INSERT INTO decisions ({','.join(d)}) VALUES ({','.join('?' * len(d))})",
                    tuple(d.values()))  # fmt: skip
        con.execute(f"INSERT INTO audit_log ({','.join(a)}) VALUES ({','.join('?' * len(a))})",
                    tuple(a.values()))  # fmt: skip
        con.execute("COMMIT")
        w.append(time.perf_counter() - t)
    con.close()
    out["sqlite3_driver"] = {"replay_check": ms_stats(rd), "write": ms_stats(w)}
    return out
