"""The feedback loop end to end (issue 16, section 1): payments scored by the service, a review
decision, a chargeback on an approved payment, the CSV export, `riskgate train --labels`,
`riskgate promote`, `POST /admin/reload`; then the evidence that the new model saw the labels.

One test, because each step needs the one before it and two trainings are the cost. The data is
small (the training CLI's own tests cover the job itself) and the scored payments are rows of the
training file, so the exported labels match its transaction ids.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from data.load import load
from data.simulator import SimulationConfig, simulate
from tests.serving.conftest import DEADLINE_MS
from tests.serving.helpers import ADMIN, BACKEND, KEY_SPEC, REVIEWER, running_service
from tests.training.helpers import forget_tracking_uri, riskgate, store_uri
from training.feedback import changed_ids_digest, merge_labels, read_labels, validate_labels
from training.pipeline import dataset_digest

# The smallest data that still gives a fit period, a label-delay gap and a test period.
ROWS, DAYS, SEED = 20_000, 60, 11


def payload(row: pd.Series) -> dict[str, Any]:
    """A data file's row as the backend would send it to POST /score."""
    out: dict[str, Any] = {}
    for k, v in row.drop(["is_fraud", "label_time", "scenario"], errors="ignore").items():
        if v is None or v is pd.NaT or (isinstance(v, float) and math.isnan(v)):
            continue
        out[str(k)] = v.isoformat().replace("+00:00", "Z") if isinstance(v, pd.Timestamp) else v
    return out


def run_of_version(uri: str, version: str) -> Any:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    return client.get_run(str(client.get_model_version("riskgate", version).run_id))


@pytest.fixture
def loop_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A payments file, a throw-away MLflow store holding its first champion, and the service's
    settings to serve that champion from the registry (no local artifact: reload must go to
    MLflow)."""
    for name in list(os.environ):
        if name.startswith("RISKGATE_"):
            monkeypatch.delenv(name)
    uri = store_uri(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    frame = simulate(SimulationConfig(rows=ROWS, days=DAYS, seed=SEED))
    data = tmp_path / "payments.parquet"
    frame.to_parquet(data, index=False)
    first = riskgate("train", "--data", data, "--search-trials", "1")
    assert first.code == 0, first.err[-2000:]
    promoted = riskgate("promote")
    assert promoted.code == 0, promoted.err
    for name, value in {
        "RISKGATE_API_KEYS": KEY_SPEC,
        "RISKGATE_DB_URL": f"sqlite:///{tmp_path / 'riskgate.db'}",
        "RISKGATE_STATE_PATH": str(tmp_path / "state.db"),
        "RISKGATE_MODEL_DEADLINE_MS": DEADLINE_MS,
    }.items():
        monkeypatch.setenv(name, value)
    yield {"uri": uri, "frame": frame, "data": data, "tmp": tmp_path}
    forget_tracking_uri()


def test_a_chargeback_reaches_the_next_model_through_export_train_promote_reload(loop_env):
    uri, frame, data, tmp = (loop_env[k] for k in ("uri", "frame", "data", "tmp"))
    v1 = run_of_version(uri, "1")
    fit_end = pd.Timestamp(v1.data.params["split_train_end"])
    genuine = frame[
        (frame["is_fraud"] == 0) & (frame["timestamp"] < fit_end - pd.Timedelta(days=7))
    ]
    candidates = genuine.sort_values("amount").head(20)

    with running_service() as client:
        # 1. Score rows of the training file; the first the model approves gets the chargeback.
        approved = None
        for _, row in candidates.iterrows():
            r = client.post("/score", json=payload(row), headers=BACKEND)
            assert r.status_code == 200, r.text
            assert r.json()["model_version"] == "1"
            if r.json()["decision"] == "approve":
                approved = row
                break
        assert approved is not None, "the champion approved none of 20 small genuine payments"

        # 2. Another row held for review by a rule, and a reviewer approves it.
        reviewed = genuine.sort_values("amount").iloc[-1]
        rule = {"name": "big", "field": "amount", "op": ">=", "value": reviewed["amount"]}
        policy = {"rules": [{**rule, "action": "review"}], "reason": "feedback loop test"}
        r = client.put("/admin/policy?force=true", json=policy, headers=ADMIN)
        assert r.status_code == 200, r.text
        r = client.post("/score", json=payload(reviewed), headers=BACKEND)
        assert r.status_code == 200, r.text
        assert r.json()["decision"] == "review", r.text
        case = r.json()["case_id"]
        assert client.post(f"/cases/{case}/claim", headers=REVIEWER).status_code == 200
        r = client.post(f"/cases/{case}/decision", json={"decision": "approve"}, headers=REVIEWER)
        assert r.status_code == 200, r.text

        # 3. The chargeback on the approved payment, a day after it was paid.
        txn = str(approved["transaction_id"])
        charged = approved["timestamp"] + pd.Timedelta(days=1)
        label = {"transaction_id": txn, "is_fraud": True, "label_time": charged.isoformat()}
        r = client.post("/labels", json={**label, "reason": "chargeback"}, headers=BACKEND)
        assert r.status_code == 200, r.text
        assert r.json()["stored"] is True

        # 4. GET /labels/export?format=csv > labels.csv
        r = client.get("/labels/export", params={"format": "csv"}, headers=ADMIN)
        assert r.status_code == 200, r.text
        labels_csv = tmp / "labels.csv"
        labels_csv.write_bytes(r.content)

        # 5. riskgate train --labels labels.csv; riskgate promote
        second = riskgate("train", "--data", data, "--labels", labels_csv, "--search-trials", "1")
        assert second.code == 0, second.err[-2000:]
        assert (
            "labels: 2 events; 2 payments matched, 1 of them changed label, "
            "0 events matched no payment"
        ) in second.err
        assert "registered riskgate v2 (alias challenger)" in second.out
        # The challenger need not beat the champion on one changed label: promote it on purpose.
        promoted = riskgate("promote", "--force", "--reason", "retrained with the chargeback")
        assert promoted.code == 0, promoted.err
        assert "riskgate v2 is now the champion" in promoted.out

        # 6. POST /admin/reload swaps the served model.
        r = client.post("/admin/reload", headers=ADMIN)
        assert r.status_code == 200, r.text
        assert r.json() == {"previous": "1", "model_version": "2"}
        after = frame[frame["timestamp"] >= pd.Timestamp(v1.data.params["split_test_start"])].iloc[
            0
        ]
        r = client.post("/score", json=payload(after), headers=BACKEND)
        assert r.status_code == 200, r.text
        assert r.json()["model_version"] == "2"

    # 7. The new model's run records what the labels did and which data it was fitted on.
    v2 = run_of_version(uri, "2")
    metrics, params, tags = v2.data.metrics, v2.data.params, v2.data.tags
    assert {k: metrics[k] for k in metrics if k.startswith("labels_")} == {
        "labels_events": 2.0,
        "labels_matched": 2.0,
        "labels_changed": 1.0,
        "labels_unmatched": 0.0,
    }
    assert tags["labels_changed_ids_digest"] == changed_ids_digest([txn])
    assert params["labels"] == str(labels_csv)
    # The training table the run records (its dataset digest) is the data file with the
    # exported labels merged, in which the charged-back payment is fraud since the chargeback.
    table = merge_labels(load(data), validate_labels(read_labels(labels_csv), str(labels_csv)))
    assert tags["dataset_digest"] == dataset_digest(table)
    assert tags["dataset_digest"] != v1.data.tags["dataset_digest"]
    relabelled = table.set_index("transaction_id").loc[txn]
    assert (relabelled["is_fraud"], relabelled["label_time"]) == (1, charged)
    # ... and the fit used that fraud: its label was known by the end of training.
    assert params["period_fit_0_fraud_used"] == str(
        int(v1.data.params["period_fit_0_fraud_used"]) + 1
    )
