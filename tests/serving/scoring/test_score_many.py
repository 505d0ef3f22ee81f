"""The batch path (one model call, one group commit) decides exactly as one-by-one scoring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data.simulator import SimulationConfig, simulate
from serving.core.auth import KeyRing
from serving.core.schemas import PaymentIn
from serving.core.settings import Settings
from serving.http.runtime import build
from tests.serving.helpers import counts

KEYS = "backend:backend-key-0123456789"


def _payments(n: int) -> list[PaymentIn]:
    frame = simulate(SimulationConfig(rows=4_000, days=10, seed=3)).iloc[-n:]
    cols = [c for c in frame.columns if c not in ("is_fraud", "label_time", "scenario")]
    out = []
    for rec in frame[cols].to_dict("records"):
        clean = {
            k: (v.isoformat() if isinstance(v, pd.Timestamp) else v)
            for k, v in rec.items()
            if not (v is None or v is pd.NaT or (isinstance(v, float) and np.isnan(v)))
        }
        out.append(PaymentIn.model_validate(clean))
    return out


def _runtime(tmp: Path, model_dir: Path):
    s = Settings(
        model_dir=str(model_dir),
        db_url=f"sqlite:///{tmp}/rg.db",
        state_path=f"{tmp}/state.db",
        api_keys=KEYS,
        model_deadline_ms=5_000,
    )
    return build(s, KeyRing.parse(KEYS))


@pytest.fixture(scope="module")
def payments() -> list[PaymentIn]:
    return _payments(300)


def test_batch_decides_like_one_by_one(tmp_path: Path, model_dir: Path, payments) -> None:
    one = _runtime(tmp_path / "one", model_dir)
    many = _runtime(tmp_path / "many", model_dir)
    try:
        who = one.keys.authenticate(f"Bearer {KEYS.split(':')[1]}")
        singles = [one.scorer.score(p, who)[1] for p in payments]
        status, batch = many.scorer.score_many(payments, who)
        assert status == 200
        assert isinstance(batch, list)
        assert [b["transaction_id"] for b in batch] == [p.transaction_id for p in payments]
        for a, b in zip(singles, batch, strict=True):
            assert a["decision"] == b["decision"]
            assert a["probability"] == pytest.approx(b["probability"], rel=1e-12)
            assert [r["feature"] for r in a["reasons"]] == [r["feature"] for r in b["reasons"]]
        assert counts(one.engine) == counts(many.engine)
    finally:
        one.close()
        many.close()


def test_batch_replayed_with_the_same_key_creates_nothing_new(
    tmp_path: Path, model_dir: Path, payments
) -> None:
    rt = _runtime(tmp_path, model_dir)
    try:
        who = rt.keys.authenticate(f"Bearer {KEYS.split(':')[1]}")
        first = rt.scorer.score_many(payments[:50], who, "batch-key")[1]
        before = counts(rt.engine)
        again = rt.scorer.score_many(payments[:50], who, "batch-key")[1]
        assert counts(rt.engine) == before
        assert isinstance(first, list)
        assert isinstance(again, list)
        assert all(r["replayed"] for r in again)
        assert [r["decision"] for r in first] == [r["decision"] for r in again]
    finally:
        rt.close()
