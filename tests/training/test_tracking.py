"""What a training run leaves in MLflow, and that the registered model scores like the run did."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from data.load import load
from features.batch import compute
from tests.training.helpers import CliRun, riskgate, tracking_store
from training.config import BusinessInputs, TrainConfig
from training.pipeline import dataset_digest

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")

POLICIES = ("riskgate", "plain_lightgbm", "rules", "logistic")
PLOTS = {"pr_curve.png", "calibration.png", "shap_summary.png", "threshold_tradeoff.png"}


@dataclass
class Tracked:
    uri: str
    runs: list[CliRun]
    metrics_out: list[dict[str, Any]]
    scores_out: list[pd.DataFrame]
    run: Any  # mlflow Run of v1
    artifacts: dict[str, list[str]]  # folder -> file names (v1's run)
    tables: dict[str, Any]  # tables/*.json of v1's run
    versions: dict[str, Any]  # version -> ModelVersion
    challenger: str
    loaded_scores: np.ndarray  # tracking.load_version("1") on the test features
    pyfunc_scores: np.ndarray  # mlflow.pyfunc models:/riskgate/1 on a DataFrame of features
    raw_scores: np.ndarray  # the artifact's booster, raw (uncalibrated), on the test features
    native_raw_scores: np.ndarray  # mlflow.lightgbm.load_model of the run's booster, same rows
    digest: str


@pytest.fixture(scope="module")
def tracked(data_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Tracked:
    """Train twice with the same seed into one temporary store; read back what was logged."""
    tmp = tmp_path_factory.mktemp("tracking")
    with tracking_store(tmp / "store") as uri:
        import lightgbm as lgb
        import mlflow

        from training import tracking

        runs, metrics_out, scores_out = [], [], []
        for i in (1, 2):
            m, s = tmp / f"metrics{i}.json", tmp / f"scores{i}.parquet"
            runs.append(
                riskgate("train", "--data", data_path, "--metrics-out", m, "--scores-out", s)
            )
            assert runs[-1].code == 0, runs[-1].err
            metrics_out.append(json.loads(m.read_text()))
            scores_out.append(pd.read_parquet(s))

        client = tracking.connect()
        versions = {str(mv.version): mv for mv in client.search_model_versions("name = 'riskgate'")}
        run = client.get_run(versions["1"].tags["run_id"])
        artifacts = {
            folder: sorted(
                Path(a.path).name for a in client.list_artifacts(run.info.run_id, folder)
            )
            for folder in ("plots", "tables")
        }
        local = Path(
            mlflow.artifacts.download_artifacts(
                run_id=run.info.run_id, artifact_path="tables", dst_path=str(tmp / "dl")
            )
        )
        tables = {p.name: json.loads(p.read_text()) for p in local.glob("*.json")}
        png_ok = {
            name: _is_png(
                mlflow.artifacts.download_artifacts(
                    run_id=run.info.run_id, artifact_path=f"plots/{name}", dst_path=str(tmp / "p")
                )
            )
            for name in artifacts["plots"]
        }
        artifacts["valid_png"] = sorted(n for n, ok in png_ok.items() if ok)
        challenger = str(client.get_model_version_by_alias("riskgate", "challenger").version)

        frame = load(data_path)
        features = compute(frame).set_index("transaction_id")
        test_ids = scores_out[0]["transaction_id"].to_numpy()
        model = tracking.load_version("1")
        X = features.loc[test_ids, list(model.features)]
        loaded = model.predict_proba(np.ascontiguousarray(X.to_numpy(np.float64)))
        pyfunc = mlflow.pyfunc.load_model("models:/riskgate/1")
        pyfunc_scores = np.asarray(pyfunc.predict(X.reset_index(drop=True)), dtype=np.float64)
        raw = model.raw(np.ascontiguousarray(X.to_numpy(np.float64)))
        native = mlflow.lightgbm.load_model(run.data.tags["booster_model_uri"])
        assert isinstance(native, lgb.Booster)
        native_raw = np.asarray(native.predict(X.reset_index(drop=True)), dtype=np.float64)
    return Tracked(
        uri=uri,
        runs=runs,
        metrics_out=metrics_out,
        scores_out=scores_out,
        run=run,
        artifacts=artifacts,
        tables=tables,
        versions=versions,
        challenger=challenger,
        loaded_scores=loaded,
        pyfunc_scores=pyfunc_scores,
        raw_scores=raw,
        native_raw_scores=native_raw,
        digest=dataset_digest(frame),
    )


def _is_png(path: str) -> bool:
    data = Path(path).read_bytes()
    return data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1_000


# --- the run --------------------------------------------------------------------------------


def test_run_holds_the_training_parameters(tracked: Tracked, data_path: Path, frame):
    params = tracked.run.data.params
    assert params["data"] == str(data_path)
    assert params["rows"] == str(len(frame))
    defaults = TrainConfig()
    assert params["seed"] == str(defaults.seed)
    assert params["label_delay_days"] == str(defaults.label_delay_days)
    assert params["lgb_num_leaves"] == str(defaults.lightgbm.num_leaves)
    for key in (
        "lgb_num_leaves",
        "lgb_n_estimators",
        "business_review_share",
        "split_train_start",
        "split_test_end",
        "feature_set_version",
        "threshold_review",
        "threshold_decline",
    ):
        assert key in params, key
    split = tracked.metrics_out[0]["split"]
    assert params["split_test_start"] == split["test_start"]


def test_run_holds_metrics_for_every_policy(tracked: Tracked):
    metrics = tracked.run.data.metrics
    out = tracked.metrics_out[0]["metrics"]
    for policy in POLICIES:
        for key in ("average_precision", "roc_auc", "recall", "precision", "review_rate"):
            name = f"{policy}_{key}"
            assert name in metrics, name
            assert metrics[name] == pytest.approx(out[policy][key], rel=1e-12)
    assert metrics["riskgate_calibration_error"] >= 0
    assert metrics["review_count"] == tracked.metrics_out[0]["review_count"]
    assert metrics["review_count"] == out["riskgate"]["flagged"]
    assert "challenger_amount_caught_at_k" in metrics


def test_run_is_tagged_with_the_digest_of_its_data(tracked: Tracked):
    assert tracked.run.data.tags["dataset_digest"] == tracked.digest
    assert len(tracked.digest) == 16


def test_run_holds_the_four_plots_as_png(tracked: Tracked):
    assert set(tracked.artifacts["plots"]) == PLOTS
    assert set(tracked.artifacts["valid_png"]) == PLOTS


def test_run_holds_the_tradeoff_and_metrics_tables(tracked: Tracked):
    assert set(tracked.artifacts["tables"]) == {"tradeoff.json", "metrics.json"}
    assert tracked.tables["tradeoff.json"] == tracked.metrics_out[0]["tradeoff"]
    assert tracked.tables["metrics.json"] == tracked.metrics_out[0]["metrics"]


# --- the registry ----------------------------------------------------------------------------


def test_each_run_registers_a_version_and_the_newest_is_the_challenger(tracked: Tracked):
    assert sorted(tracked.versions) == ["1", "2"]
    assert tracked.challenger == "2"
    v1 = tracked.versions["1"]
    assert v1.tags["run_id"] == tracked.run.info.run_id
    assert v1.tags["feature_set_version"] == tracked.run.data.params["feature_set_version"]
    assert tracked.versions["2"].tags["run_id"] != v1.tags["run_id"]
    assert "registered riskgate v1 (alias challenger)" in tracked.runs[0].out


def test_the_registered_model_reproduces_the_test_scores_exactly(tracked: Tracked):
    want = tracked.scores_out[0]["score"].to_numpy()
    assert np.array_equal(tracked.loaded_scores, want)


def test_the_pyfunc_flavour_reproduces_the_test_scores_exactly(tracked: Tracked):
    want = tracked.scores_out[0]["score"].to_numpy()
    assert tracked.pyfunc_scores.shape == want.shape
    assert np.array_equal(tracked.pyfunc_scores, want)


def test_the_native_lightgbm_booster_is_logged_in_the_same_run(tracked: Tracked):
    """mlflow.lightgbm.load_model of the run's `booster` gives the artifact's raw scores."""
    uri = tracked.run.data.tags["booster_model_uri"]
    assert uri.startswith("models:/")
    assert tracked.native_raw_scores.shape == tracked.raw_scores.shape
    np.testing.assert_array_equal(tracked.native_raw_scores, tracked.raw_scores)
    # raw, not calibrated: the two differ wherever calibration moves a score
    assert not np.array_equal(tracked.native_raw_scores, tracked.pyfunc_scores)


# --- the command's own outputs ------------------------------------------------------------------


def test_metrics_out_holds_all_three_policies_and_the_tradeoff_table(tracked: Tracked):
    out = tracked.metrics_out[0]
    assert set(out["metrics"]) == set(POLICIES)
    for policy in POLICIES:
        assert 0.0 <= out["metrics"][policy]["average_precision"] <= 1.0
    capacities = [r["capacity_share"] for r in out["tradeoff"]]
    assert capacities == list(BusinessInputs().capacities)
    assert out["thresholds"]["review_by"] in ("probability", "saving")
    if out["thresholds"]["review_by"] == "probability":
        assert out["thresholds"]["review"] <= out["thresholds"]["decline"]
    assert set(out["split"]) == {
        "train_start",
        "train_end",
        "valid_start",
        "valid_end",
        "test_start",
        "test_end",
        "labels_as_of",
        "selection",
    }


def test_scores_out_holds_the_test_period_with_labels(tracked: Tracked, frame):
    scores = tracked.scores_out[0]
    assert list(scores.columns) == ["transaction_id", "score", "label"]
    assert scores["transaction_id"].is_unique
    assert set(scores["label"].unique()) <= {0, 1}
    assert scores["label"].sum() > 0
    test_start = pd.Timestamp(tracked.metrics_out[0]["split"]["test_start"])
    ts = frame.set_index("transaction_id").loc[scores["transaction_id"], "timestamp"]
    assert (ts >= test_start).all()


def test_same_seed_gives_the_same_model_scores(tracked: Tracked):
    first, second = tracked.scores_out
    pd.testing.assert_frame_equal(first, second, check_exact=True)
    assert tracked.metrics_out[0]["metrics"] == tracked.metrics_out[1]["metrics"]
    assert tracked.metrics_out[0]["thresholds"] == tracked.metrics_out[1]["thresholds"]


def test_the_registered_model_loads_without_riskgate_and_without_a_pickle(
    tracked: Tracked, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """models:/riskgate/1 in a fresh interpreter: no riskgate module is imported to load and
    score it, the model holds no pickle, and the scores are riskgate's own."""
    import mlflow

    from training import tracking

    features = tmp_path / "X.parquet"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracked.uri)
    model = tracking.load_version("1")
    X = pd.DataFrame(
        np.random.default_rng(0).normal(size=(50, len(model.features))), columns=model.features
    )
    X.to_parquet(features)
    code = (
        "import sys, json, mlflow, pandas as pd\n"
        f"mlflow.set_tracking_uri({tracked.uri!r})\n"
        "m = mlflow.pyfunc.load_model('models:/riskgate/1')\n"
        f"p = m.predict(pd.read_parquet({str(features)!r}))\n"
        "ours = [n for n in ('training', 'features', 'serving', 'data') if n in sys.modules]\n"
        "print(json.dumps({'p': [float(v) for v in p], 'ours': ours}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["ours"] == [], "loading the registered model imported riskgate code"
    want = model.predict_proba(np.ascontiguousarray(X.to_numpy(np.float64)))
    np.testing.assert_allclose(out["p"], want, rtol=0, atol=1e-12)
    local = Path(
        mlflow.artifacts.download_artifacts(
            run_id=tracked.run.info.run_id, artifact_path="model", dst_path=str(tmp_path / "m")
        )
    )
    assert not list(local.rglob("*.pkl")), "the model is code and data, not a pickle"
    assert "mlflow_pyfunc.py" in {p.name for p in local.rglob("*.py")}
