"""Policy backtest, validation, forced changes and shadow rollout (issue 21), on one simulated
month scored through the in-process service (its stored features, probabilities, decisions)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from data.simulator import SimulationConfig, simulate
from serving.scoring import backtest, facts
from serving.scoring.policy import parse_config
from serving.store import db
from tests.serving.conftest import DEADLINE_MS
from tests.serving.helpers import (
    ADMIN,
    BACKEND,
    low_risk,
    running_service,
    service_env_for,
)

ROWS, DAYS = 1_200, 30
BIG = 600.0  # the amount rule in force
IN_FORCE = {
    "rules": [
        {"name": "big amount", "field": "amount", "op": ">", "value": BIG, "action": "review"},
        {"name": "night", "field": "hour(timestamp)", "op": "<", "value": 2, "action": "review"},
    ],
}


def _payloads(frame: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    contract = frame.drop(columns=["is_fraud", "label_time", "scenario"])
    for rec in contract.to_dict("records"):
        item = {}
        for k, v in rec.items():
            if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NaT:
                continue
            item[k] = v.isoformat().replace("+00:00", "Z") if isinstance(v, pd.Timestamp) else v
        out.append(item)
    return out


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Iterator[Any]:
    """A service with IN_FORCE in force that scored a simulated month; its chargebacks posted."""
    work = tmp_path_factory.mktemp("backtest")
    with (
        service_env_for(work, model_dir, RISKGATE_MODEL_DEADLINE_MS=DEADLINE_MS),
        running_service() as client,
    ):
        from serving.http.service import http_app

        rt = http_app.state.runtime
        r = client.put("/admin/policy?force=true", json=IN_FORCE, headers=ADMIN)
        assert r.status_code == 200, r.text
        frame = simulate(SimulationConfig(rows=ROWS, days=DAYS, seed=3))
        payloads = _payloads(frame)
        for i in range(0, len(payloads), 400):
            r = client.post(
                "/score_batch", json={"payments": payloads[i : i + 400]}, headers=BACKEND
            )
            assert r.status_code == 200, r.text
        for row in frame[frame["is_fraud"] == 1].itertuples():
            label = {"transaction_id": row.transaction_id, "is_fraud": True}
            if not pd.isna(row.label_time):
                label["label_time"] = row.label_time.isoformat()
            assert client.post("/labels", json=label, headers=BACKEND).status_code == 200
        yield client, rt, frame


def _stored_decisions(rt: Any) -> pd.DataFrame:
    with rt.engine.connect() as conn:
        rows = conn.execute(
            select(db.decisions.c.transaction_id, db.decisions.c.decision, db.decisions.c.amount)
        ).all()
    return pd.DataFrame(rows, columns=["transaction_id", "decision", "amount"])


def test_backtest_of_the_policy_in_force_equals_what_happened(month):
    client, rt, frame = month
    r = client.post("/admin/policy/backtest", json=IN_FORCE, headers=ADMIN)
    assert r.status_code == 200, r.text
    report = r.json()
    stored = _stored_decisions(rt)
    assert report["payments"] == len(stored) == ROWS
    happened = stored["decision"].value_counts().to_dict()
    for column in ("actual", "in_force", "proposed"):
        c = report[column]
        assert c["decisions"] == {k: happened.get(k, 0) for k in ("approve", "review", "decline")}
        assert c == report["actual"]  # every figure, the team replay included
    assert report["changes"] == {"changed": 0, "by_kind": {}}
    assert happened.get("review", 0) > 0  # the month exercises the review path
    # payment by payment, the replay reproduces each stored decision
    loaded = facts.load(rt.engine, *(pd.Timestamp(0, tz="UTC"), pd.Timestamp.now(tz="UTC")))
    assert backtest.replay_decisions(loaded, rt.policy()) == loaded.decision
    # also when the policy reads fields of the stored record (decoded, not from the columns)
    never = {
        "name": "never",
        "field": "card_count_1h",
        "op": ">",
        "value": 1e6,
        "action": "decline",
    }
    listed = parse_config(
        {"rules": [*IN_FORCE["rules"], never], "block": {"device_id": ["no-such-device"]}}
    )
    assert backtest.replay_decisions(loaded, listed) == loaded.decision
    # labels as known now: every simulated fraud is old enough and its label is counted
    fraud_ids = set(frame.loc[frame["is_fraud"] == 1, "transaction_id"])
    caught = stored[stored["transaction_id"].isin(fraud_ids) & (stored["decision"] != "approve")]
    assert report["actual"]["mature"]["fraud_known"] == len(fraud_ids)
    assert report["actual"]["mature"]["fraud_caught_count"] == len(caught)
    assert report["actual"]["mature"]["fraud_caught_amount"] == pytest.approx(
        caught["amount"].sum()
    )
    assert report["actual"]["label_immature"]["payments"] == 0


def test_a_stricter_amount_rule_raises_review_volume_by_exactly_the_payments_it_matches(month):
    client, rt, _ = month
    stricter = 250.0
    proposal = {
        "rules": [
            {**IN_FORCE["rules"][0], "value": stricter},
            IN_FORCE["rules"][1],
        ]
    }
    r = client.post("/admin/policy/backtest", json=proposal, headers=ADMIN)
    assert r.status_code == 200, r.text
    report = r.json()
    stored = _stored_decisions(rt)
    newly = stored[(stored["amount"] > stricter) & (stored["decision"] == "approve")]
    assert len(newly) > 0
    gain = report["proposed"]["review_volume"] - report["in_force"]["review_volume"]
    assert gain == len(newly)
    assert report["changes"]["changed"] == len(newly)
    assert report["changes"]["by_kind"]["approve->review"]["payments"] == len(newly)
    assert report["changes"]["by_kind"]["approve->review"]["amount"] == pytest.approx(
        newly["amount"].sum()
    )
    per_day_gain = sum(report["proposed"]["reviews_per_day"].values()) - sum(
        report["in_force"]["reviews_per_day"].values()
    )
    assert per_day_gain == len(newly)


INVALID = {
    "unknown field": ({"field": "amout", "op": ">", "value": 1}, "unknown field 'amout'"),
    "text vs number": ({"field": "amount", "op": ">", "value": "big"}, "is a number"),
    "order on text": ({"field": "ip_country", "op": ">", "value": "DE"}, "is text"),
    "date function on a number": (
        {"field": "hour(amount)", "op": "<", "value": 6},
        "hour() needs a date field",
    ),
    "unknown function": ({"field": "month(timestamp)", "op": "==", "value": 1}, "unknown function"),
    "bare date": ({"field": "account_created_at", "op": "<", "value": 3}, "is a date"),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_a_rule_that_cannot_be_evaluated_is_refused_at_backtest_and_at_put(month, case):
    client, rt, _ = month
    spec, reason = INVALID[case]
    rule = {"name": f"bad {case}", "action": "review", **spec}
    before = client.get("/admin/policy", headers=ADMIN).json()
    with rt.engine.connect() as conn:
        backtests = len(conn.execute(select(db.policy_backtests.c.id)).all())
    for method, path in (("POST", "/admin/policy/backtest"), ("PUT", "/admin/policy?force=true")):
        r = client.request(method, path, json={"rules": [rule]}, headers=ADMIN)
        assert r.status_code == 400, (path, r.text)
        error = r.json()["error"]
        assert error["rule"] == rule["name"]
        assert reason in error["reason"], error
    assert client.get("/admin/policy", headers=ADMIN).json() == before
    with rt.engine.connect() as conn:
        assert len(conn.execute(select(db.policy_backtests.c.id)).all()) == backtests
    with pytest.raises(ValueError, match="rule 'bad"):
        parse_config({"rules": [rule]})  # the policy file and the stored policy likewise


def test_a_period_that_ends_before_it_starts_is_refused_naming_the_period(month):
    client, _, _ = month
    period = {"start": "2024-02-01T00:00:00Z", "end": "2024-01-01T00:00:00Z"}
    r = client.post("/admin/policy/backtest", json={**IN_FORCE, "period": period}, headers=ADMIN)
    assert r.status_code == 400, r.text
    assert r.json()["error"].startswith("period:")


def test_put_needs_a_backtest_newer_than_the_policy_in_force_or_force(month):
    client, _rt, _ = month
    proposal = {"rules": [{**IN_FORCE["rules"][0], "value": 400.0}], "block": {}}
    r = client.put("/admin/policy", json=proposal, headers=ADMIN)
    assert r.status_code == 409, r.text
    assert "backtest" in r.json()["error"]
    bt = client.post("/admin/policy/backtest", json=proposal, headers=ADMIN).json()
    r = client.put("/admin/policy", json={**proposal, "reason": "fewer reviews"}, headers=ADMIN)
    assert r.status_code == 200, r.text
    history = client.get("/admin/policy/history", headers=ADMIN).json()["items"]
    assert history[0]["backtest_id"] == bt["backtest_id"]
    assert history[0]["force"] is False
    assert history[0]["reason"] == "fewer reviews"
    assert history[0]["backtest"]["proposed"]["review_volume"] == bt["proposed"]["review_volume"]
    # that backtest is now older than the policy in force: going back needs a new one or force
    r = client.put("/admin/policy", json=IN_FORCE, headers=ADMIN)
    assert r.status_code == 409, r.text
    r = client.put("/admin/policy?force=true", json=IN_FORCE, headers=ADMIN)
    assert r.status_code == 200, r.text
    audit = client.get("/admin/audit", params={"action": "policy"}, headers=ADMIN).json()
    assert audit["items"][0]["detail"]["force"] is True
    assert audit["items"][0]["detail"]["backtest"] is None


def test_shadow_decisions_are_stored_and_never_act(month):
    client, rt, _ = month
    decline_all = {"rules": [{"name": "all", "field": "amount", "op": ">=", "value": 0,
                              "action": "decline"}]}  # fmt: skip
    r = client.put("/admin/policy?mode=shadow", json=decline_all, headers=ADMIN)
    assert r.status_code == 200, r.text
    shadow_id = r.json()["id"]
    live_before = client.get("/admin/policy", headers=ADMIN).json()
    assert live_before["rules"] == IN_FORCE["rules"]
    answers = [
        client.post("/score", json=low_risk(f"shadow-{i}"), headers=BACKEND).json()
        for i in range(3)
    ]
    assert [a["decision"] for a in answers] == ["approve"] * 3
    for a in answers:
        status = client.get(f"/payments/{a['transaction_id']}", headers=BACKEND).json()
        assert status["status"] == "settled"
    with rt.engine.connect() as conn:
        stored = conn.execute(
            select(db.payment_facts.c.shadow_decision, db.payment_facts.c.shadow_id).where(
                db.payment_facts.c.transaction_id.in_([a["transaction_id"] for a in answers])
            )
        ).all()
    assert [tuple(s) for s in stored] == [("decline", shadow_id)] * 3
    compared = client.get("/admin/policy/shadow", headers=ADMIN).json()
    assert compared["payments"] == 3
    assert compared["live"]["approve"] == 3
    assert compared["shadow"]["decline"] == 3
    assert compared["by_kind"] == {"approve->decline": 3}
    # drop: the live policy is unchanged, audited with the comparison
    r = client.delete("/admin/policy/shadow", headers=ADMIN)
    assert r.status_code == 200, r.text
    assert client.get("/admin/policy", headers=ADMIN).json() == live_before
    assert client.get("/admin/policy/shadow", headers=ADMIN).status_code == 404
    after = client.post("/score", json=low_risk("shadow-after"), headers=BACKEND).json()
    with rt.engine.connect() as conn:
        row = conn.execute(
            select(db.payment_facts.c.shadow_decision).where(
                db.payment_facts.c.transaction_id == after["transaction_id"]
            )
        ).scalar_one()
    assert row is None
    # promote: the shadow becomes the live policy, audited
    review_night = {"rules": [*IN_FORCE["rules"], {"name": "fr", "field": "ip_country",
                    "op": "==", "value": "FR", "action": "review"}]}  # fmt: skip
    client.put("/admin/policy?mode=shadow", json=review_night, headers=ADMIN)
    r = client.post("/admin/policy/shadow/promote", headers=ADMIN)
    assert r.status_code == 200, r.text
    assert client.get("/admin/policy", headers=ADMIN).json()["rules"] == review_night["rules"]
    actions = [
        h["action"] for h in client.get("/admin/policy/history", headers=ADMIN).json()["items"]
    ]
    assert actions[:4] == ["policy_promote", "policy_shadow", "policy_drop", "policy_shadow"]
    client.put("/admin/policy?force=true", json=IN_FORCE, headers=ADMIN)  # back for the others


def test_label_maturity_counts_young_payments_apart():
    """Pure: payments younger than the label delay at as_of are counted apart."""
    from datetime import UTC, datetime, timedelta

    from serving.scoring.policy import PolicyConfig
    from training.model import Thresholds

    t0 = datetime(2024, 3, 1, tzinfo=UTC)
    n = 4
    stored = facts.Stored(
        transaction_id=[f"t{i}" for i in range(n)],
        payment_time=np.array([(t0 + timedelta(days=3 * i)).timestamp() for i in range(n)]),
        amount=np.array([10.0, 20.0, 30.0, 40.0]),
        card_id=[f"c{i}" for i in range(n)],
        raw_payments=[
            {"transaction_id": f"t{i}", "amount": a, "timestamp": (t0 + timedelta(days=3 * i))}
            for i, a in enumerate([10.0, 20.0, 30.0, 40.0])
        ],
        probability=[0.9, 0.1, 0.9, 0.9],
        thresholds=[Thresholds(review=0.5, decline=2.0)] * n,
        decision=["review", "approve", "review", "review"],
        features={},
        vectors=[(None, None)] * n,
        shadow_decision=[None] * n,
        shadow_id=[None] * n,
    )
    period = backtest.Period(t0, t0 + timedelta(days=12))
    as_of = t0 + timedelta(days=12)  # t2 (day 6) and t3 (day 9) are younger than 7 days
    report = backtest.run(
        stored, {"t0": True, "t3": True}, PolicyConfig(), PolicyConfig(), period, as_of=as_of
    )
    col = report["proposed"]
    assert col["mature"]["payments"] == 2
    assert col["mature"]["fraud_known"] == 1
    assert col["mature"]["fraud_caught_count"] == 1
    assert col["mature"]["good_held"] == 0
    assert col["label_immature"] == {
        "payments": 2,
        "held": 2,
        "declined": 0,
        "fraud_known_so_far": 1,
    }


def test_the_cli_backtest_reports_what_the_api_reports(month, tmp_path, capsys):
    client, rt, _ = month
    from serving.cli import main

    proposal = {"rules": [{**IN_FORCE["rules"][0], "value": 300.0}, IN_FORCE["rules"][1]]}
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(proposal))
    out = tmp_path / "report.json"
    url = str(rt.engine.url)
    argv = ["backtest", "--policy", str(policy), "--db", url, "--out", str(out)]
    assert main([*argv, "--since", "2024-01-01", "--until", "2024-01-30"]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    api = client.post(
        "/admin/policy/backtest",
        json={
            **proposal,
            "period": {"start": "2024-01-01T00:00:00Z", "end": "2024-01-31T00:00:00Z"},
        },
        headers=ADMIN,
    ).json()
    assert report["period"] == api["period"]  # a date-only --until includes that day
    for column in ("actual", "in_force", "proposed"):
        assert report[column] == api[column]
    assert f"{report['proposed']['decisions']['review']:,}" in printed
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"rules": [{**IN_FORCE["rules"][0], "field": "amout"}]}))
    assert main(["backtest", "--policy", str(bad), "--db", url]) == 2
    assert "unknown field 'amout'" in capsys.readouterr().err


def test_a_feature_set_written_in_a_rolled_back_transaction_is_written_again(tmp_path):
    from datetime import UTC, datetime

    engine = db.make_engine(f"sqlite:///{tmp_path / 'f.db'}")
    db.create_schema(engine)
    writer = facts.FactsWriter()
    now = datetime(2024, 3, 1, tzinfo=UTC)
    record = {"transaction_id": "t1", "timestamp": now, "card_id": "c", "amount": 1.0}

    def row() -> dict[str, Any]:
        return writer.row(record, {"_thresholds": None}, {"f1": 1.0, "f2": 2.0})

    decision = {
        "transaction_id": "t1", "created_at": now, "payment_time": now, "decision": "approve",
        "source": "model", "status": "settled", "status_at": now, "amount": 1.0,
        "currency": "EUR", "merchant_id": "m", "card_id": "c", "response": {},
    }  # fmt: skip
    first = row()

    def rolled_back() -> None:
        with engine.begin() as conn:
            conn.execute(db.decisions.insert().values(**decision))
            writer.write(conn, [first], now)
            raise RuntimeError("rolled back after the feature set was inserted")

    with pytest.raises(RuntimeError):
        rolled_back()
    with engine.begin() as conn:
        conn.execute(db.decisions.insert().values(**decision))
        writer.committed(writer.write(conn, [row()], now))
    stored = facts.load(engine, now, datetime(2024, 3, 2, tzinfo=UTC))
    assert stored.column("f2").tolist() == [2.0]
    # a payment the fallback decided (no probability, no thresholds) replays through it too
    assert stored.thresholds == [None]
    assert stored.probability == [None]
    assert backtest.replay_decisions(stored, parse_config({"fallback_max_amount": 0.5})) == [
        "review"
    ]
