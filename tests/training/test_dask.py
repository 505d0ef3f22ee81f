"""`riskgate train --dask`: LightGBM fitted on a local Dask cluster, then the normal pipeline.

Uses the shared simulated payments of `conftest.py` (60k rows over 60 days: ~23k training rows,
18 known frauds in validation, 69 in the test period) and local clusters of two single-threaded
worker processes on 127.0.0.1. Boosting is capped at 200 rounds (`CONFIG`) to keep the module
quick: the Dask fit grows every round (no early stopping on Dask, see training/dask_fit.py).
The reference is the single-machine model with the same configuration.

Tolerance on test average precision: 0.05. The two boosters are different fits of the same
data (in data-parallel mode each worker bags its own rows and bins some features from its own
rows; early stopping then picks its round on a validation curve with 18 frauds, flat and
noisy). On this test period a paired bootstrap of the test rows gives a standard error of 0.021
for the difference in AP between the two models (measured 0.025 at 200 rounds, 0.011 at 600),
so 0.05 is about 2.4 standard errors: a real loss of ranking quality (a broken partitioning, a
booster cut at the wrong round, scrambled features) moves AP by far more. The Dask fit is
deterministic for a data set, seed and cluster size, so this test cannot flake.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import psutil
import pytest
from sklearn.metrics import average_precision_score

from tests.training.helpers import registered_versions, riskgate
from training import dask_fit, fit
from training.config import LightGBMParams, SearchSettings, TrainConfig
from training.dask_fit import DaskSettings, best_round, fit_booster_dask
from training.model import RiskModel
from training.pipeline import TrainResult, train

if TYPE_CHECKING:
    from distributed import Client

AP_TOLERANCE = 0.05
WORKERS = 2
ROUNDS = 200
# The Dask fit runs no search: the single-machine reference runs fixed parameters too. At the
# default learning rate (0.1) 200 data-parallel rounds with per-worker bagging differ more from
# one machine's fit; 0.05 compares the two backends, not the rate.
# A validation period long enough to hold known frauds (the Dask fit needs one) and no refit
# (the Dask path keeps its validation-chosen booster).
CONFIG = TrainConfig(
    valid_share=0.3,
    refit=False,
    lightgbm=replace(LightGBMParams(), n_estimators=ROUNDS, learning_rate=0.05),
    search=SearchSettings(trials=1),
)


# --- helpers ------------------------------------------------------------------------------------


def _is_resource_tracker(p: psutil.Process) -> bool:
    """multiprocessing's helper, started once with the first spawned process, lives until exit."""
    try:
        return "multiprocessing.resource_tracker" in " ".join(p.cmdline())
    except psutil.Error:
        return False


def _children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def _left_behind(before: set[int]) -> list[str]:
    """Processes started since `before` that are still running a few seconds later."""
    new = [
        p
        for p in psutil.Process().children(recursive=True)
        if p.pid not in before and not _is_resource_tracker(p)
    ]
    _gone, alive = psutil.wait_procs(new, timeout=10)
    return [f"{p.pid}: {' '.join(p.cmdline())}" for p in alive if p.is_running()]


def _synthetic(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A small noisy binary problem: ~5% positives, 8 features of which 3 matter."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 8))
    logit = 1.2 * X[:, 0] - 0.8 * X[:, 1] + 0.5 * X[:, 2] * X[:, 3] - 3.5
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.float64)
    return np.ascontiguousarray(X), y, [f"f{i}" for i in range(X.shape[1])]


SMALL = LightGBMParams(n_estimators=80, early_stopping_rounds=20, min_child_samples=20)


# --- the replayed early stopping (no cluster) -----------------------------------------------------


def test_average_precision_matches_scikit_learn_with_ties():
    rng = np.random.default_rng(3)
    for _ in range(20):
        score = rng.integers(0, 12, 500) / 11  # many ties
        y = (rng.random(500) < 0.1).astype(np.float64)
        assert dask_fit._average_precision(y, score) == pytest.approx(
            average_precision_score(y, score), abs=1e-12
        )


@pytest.mark.parametrize("floor", [1, 60])
@pytest.mark.parametrize("stop", [5, 15, 40])
def test_replayed_early_stopping_picks_lightgbms_round(stop, floor):
    """On a booster grown to the end, `best_round` stops where `training.fit` stops."""
    X, y, names = _synthetic(6_000, seed=1)
    params = LightGBMParams(
        n_estimators=200, early_stopping_rounds=stop, min_child_samples=20, min_trees=floor
    )
    tr, va = slice(0, 4_000), slice(4_000, None)
    stopped = fit.fit_booster(X[tr], y[tr], X[va], y[va], names, params, seed=5)

    lightgbm_ap: list[float] = []
    never = replace(params, early_stopping_rounds=params.n_estimators)
    full = fit.fit_booster(X[tr], y[tr], X[va], y[va], names, never, seed=5, curve=lightgbm_ap)
    assert full.current_iteration() == params.n_estimators

    replayed: list[tuple[int, float]] = []
    best, ap = best_round(full, X[va], y[va], stop, lambda i, a: replayed.append((i, a)), floor)
    assert best == stopped.best_iteration
    assert best >= floor
    assert ap == pytest.approx(max(lightgbm_ap[floor - 1 : best]), abs=1e-12)
    assert [i for i, _ in replayed] == list(range(1, len(replayed) + 1))
    assert len(replayed) == min(max(best + stop, floor), params.n_estimators)
    assert stop == 40 or len(replayed) < params.n_estimators, "the case should stop early"
    np.testing.assert_allclose(
        [a for _, a in replayed], np.maximum.accumulate(lightgbm_ap[: len(replayed)]), atol=1e-12
    )


# --- a cluster of this test module (an existing client / scheduler) ------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[Client]:
    """A local cluster for this module, used through its client or its scheduler's address."""
    with dask_fit.dask_client(n_workers=WORKERS) as client:
        yield client


def test_the_fit_is_deterministic_and_leaves_a_given_cluster_running(cluster):
    X, y, names = _synthetic(5_000, seed=2)
    tr, va = slice(0, 3_500), slice(3_500, None)
    said: list[str] = []
    by_client = fit_booster_dask(
        X[tr], y[tr], X[va], y[va], names, SMALL, seed=3, client=cluster, say=said.append
    )
    address = cluster.scheduler.address
    by_address = fit_booster_dask(
        X[tr], y[tr], X[va], y[va], names, SMALL, seed=3, scheduler=address, say=said.append
    )
    assert by_client.model_to_string() == by_address.model_to_string()
    assert cluster.status == "running"
    assert len(cluster.scheduler_info()["workers"]) == WORKERS
    assert f"lightgbm on Dask (scheduler {address}): {WORKERS} workers" in said[-2]
    assert not any("starting a local Dask cluster" in m for m in said)

    assert by_client.feature_name() == names
    assert by_client.best_iteration == by_client.current_iteration() >= 1
    text = by_client.model_to_string()
    for param in ("[machines: ", "[local_listen_port: ", "[num_machines: "):
        assert param not in text, f"{param} left in the model"


def test_an_unreachable_scheduler_is_an_error(monkeypatch):
    monkeypatch.setattr(dask_fit, "CONNECT_TIMEOUT", 1.0)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    X, y, names = _synthetic(500, seed=4)
    with pytest.raises(
        ValueError, match=f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}"
    ):
        fit_booster_dask(X, y, X, y, names, SMALL, seed=1, scheduler=f"tcp://127.0.0.1:{port}")


# --- a local cluster started for the fit ------------------------------------------------------


def _listening(pids: set[int]) -> set[tuple[int, str, int]]:
    found = set()
    for pid in pids:
        try:
            conns = psutil.Process(pid).net_connections(kind="inet")
        except psutil.Error:
            continue
        found |= {(pid, c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN}
    return found


def test_a_local_cluster_listens_on_localhost_only(cluster):
    """Scheduler (and its HTTP endpoint) in this process, nannies too, workers in their own."""
    info = cluster.scheduler_info()
    addresses = [info["address"], *info["workers"]]
    assert all(a.startswith("tcp://127.0.0.1:") for a in addresses), addresses
    me = os.getpid()
    workers = set(cluster.run(os.getpid).values())
    assert len(workers) == WORKERS
    assert me not in workers
    ours = {int(a.rsplit(":", 1)[1]) for a in addresses} | {*info["services"].values()}
    ours |= {int(w["nanny"].rsplit(":", 1)[1]) for w in info["workers"].values()}
    opened = {(pid, ip, port) for pid, ip, port in _listening({me}) if port in ours}
    opened |= _listening(workers)
    assert len(opened) >= 2 + 2 * WORKERS, opened  # scheduler + HTTP, a nanny and worker each
    assert {ip for _pid, ip, _port in opened} == {"127.0.0.1"}, opened
    assert 8787 not in {port for _pid, _ip, port in opened}


@pytest.fixture(scope="module")
def reference(frame) -> TrainResult:
    """The single-machine training job with the same configuration."""
    return train(frame, CONFIG)


@pytest.fixture(scope="module")
def dask_trained(frame, cluster) -> tuple[TrainResult, list[str]]:
    """The training job with the booster fitted on the module's cluster: result, messages."""
    said: list[str] = []
    settings = DaskSettings(scheduler=cluster.scheduler.address)
    return train(frame, CONFIG, dask=settings, progress=said.append), said


def test_the_dask_model_goes_through_the_normal_pipeline(dask_trained, reference, tmp_path):
    result, said = dask_trained
    assert any("lightgbm on Dask (scheduler tcp://127.0.0.1:" in m for m in said), said
    assert any(f": {WORKERS} workers, {ROUNDS} rounds" in m for m in said), said

    model = result.model
    booster = model.booster
    assert booster.best_iteration == booster.current_iteration() >= 1
    assert list(model.features) == booster.feature_name()
    assert model.calibration.method in ("isotonic", "platt")

    # Calibrated scores and decisions from the model's own thresholds, as for the reference.
    scores = result.test_scores["score"].to_numpy()
    assert np.all((scores >= 0) & (scores <= 1))
    ours, ref = result.metrics["riskgate"], reference.metrics["riskgate"]
    assert ours["calibration_error"] == pytest.approx(ref["calibration_error"], abs=0.005)
    assert ours["review_rate"] == pytest.approx(ref["review_rate"], abs=0.01)
    assert ours["flagged"] > 0
    assert set(result.metrics) == set(reference.metrics)
    assert type(model.thresholds) is type(reference.model.thresholds)

    # The booster works as any other: saved and loaded, same scores; SHAP adds up to the logit.
    te = result.parts == "test"
    X = np.ascontiguousarray(result.features.loc[te, list(model.features)].to_numpy(np.float64))
    loaded = RiskModel.load(model.save(tmp_path / "model"))
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    np.testing.assert_allclose(model.predict_proba(X), scores)
    raw = booster.predict(X[:200], raw_score=True, num_threads=1)
    np.testing.assert_allclose(model.contributions(X[:200]).sum(axis=1), raw, atol=1e-9)


def test_test_average_precision_is_close_to_the_single_machine_model(dask_trained, reference):
    ours = dask_trained[0].metrics["riskgate"]["average_precision"]
    ref = reference.metrics["riskgate"]["average_precision"]
    assert ours == pytest.approx(ref, abs=AP_TOLERANCE), f"dask {ours:.4f} vs single {ref:.4f}"


# --- the command line -------------------------------------------------------------------------


def test_riskgate_train_dask_end_to_end(data_path, tmp_path, mlflow_store, dask_trained):
    """A local cluster started by the command, shut down after it; the same model as above."""
    config = tmp_path / "config.toml"
    config.write_text(
        "valid_share = 0.3\nrefit = false\n"
        f"[lightgbm]\nn_estimators = {ROUNDS}\nlearning_rate = 0.05\n"
    )
    metrics = tmp_path / "metrics.json"
    before = _children()
    run = riskgate(
        "train",
        "--data",
        data_path,
        "--config",
        config,
        "--no-mlflow",
        "--dask",
        "--dask-workers",
        WORKERS,
        "--metrics-out",
        metrics,
    )
    assert run.code == 0, run.err[-3000:]
    assert _left_behind(before) == [], "worker processes outlived the command"
    assert f"starting a local Dask cluster: {WORKERS} worker processes on 127.0.0.1" in run.err
    assert f"lightgbm on Dask (local cluster on 127.0.0.1): {WORKERS} workers" in run.err
    assert "average precision (PR-AUC)" in run.out
    assert "[LightGBM]" not in run.out  # the workers' network log stays out of the report
    assert registered_versions(mlflow_store) == []

    # Same data, seed, configuration and cluster size as the pipeline fit on the module's
    # cluster: the same model, so the same metrics.
    got = json.loads(metrics.read_text())["metrics"]["riskgate"]
    want = dask_trained[0].metrics["riskgate"]
    assert got["average_precision"] == pytest.approx(want["average_precision"], abs=1e-12)
    assert got["review_rate"] == pytest.approx(want["review_rate"], abs=1e-12)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--dask", "--dask-workers", "0"], "at least 1 worker is needed, got 0"),
        (["--dask", "--dask-workers", "two"], "'two' is not a whole number"),
        (["--dask-workers", "2"], "--dask-workers and --dask-scheduler need --dask"),
        (["--dask-scheduler", "tcp://127.0.0.1:8786"], "need --dask"),
        (
            ["--dask", "--dask-workers", "3", "--dask-scheduler", "tcp://127.0.0.1:8786"],
            "--dask-workers starts a local cluster: not with --dask-scheduler",
        ),
    ],
)
def test_inconsistent_dask_options_are_refused(argv, message, data_path, mlflow_store):
    run = riskgate("train", "--data", data_path, "--no-mlflow", *argv)
    assert run.code == 2, run.err[-2000:]
    assert message in run.err
    assert "Traceback" not in run.err


def test_an_unreachable_scheduler_is_refused_by_the_cli(data_path, mlflow_store, monkeypatch):
    monkeypatch.setattr(dask_fit, "CONNECT_TIMEOUT", 1.0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = riskgate(
        "train",
        "--data",
        data_path,
        "--no-mlflow",
        "--dask",
        "--dask-scheduler",
        f"tcp://127.0.0.1:{port}",
    )
    assert run.code == 2, run.err[-2000:]
    assert f"error: cannot reach the Dask scheduler at tcp://127.0.0.1:{port}" in run.err
    assert registered_versions(mlflow_store) == []


# --- the import guard -------------------------------------------------------------------------


def test_importing_the_training_modules_starts_nothing():
    """Spawned workers re-import the parent's modules: importing must not import dask, start a
    cluster or train (see training/dask_fit.py)."""
    code = (
        "import sys, psutil\n"
        "import training.dask_fit, training.pipeline, training.cli, serving.cli\n"
        "assert 'distributed' not in sys.modules and 'dask' not in sys.modules, 'dask imported'\n"
        "assert psutil.Process().children() == [], 'a process was started'\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=root
    )
    assert done.returncode == 0, done.stderr[-2000:]
