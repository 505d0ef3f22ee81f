"""`riskgate bento` builds a Bento that `bentoml serve riskgate:latest` serves with no MLflow.

One real build and one real server (BENTOML_HOME in a temp folder), reusing the serving suite's
trained model artifact: the model goes into BentoML's model store with its labels, the Bento
holds the service, riskgate's source and the locked requirements, and the served model is the
packed one (MLFLOW_TRACKING_URI points at a port nobody listens on).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from serving.http.commands import EXAMPLE_PAYMENT
from tests.servers import READY_TIMEOUT_S, free_port, log_tail
from tests.serving.helpers import BACKEND, KEY_SPEC

ROOT = Path(__file__).resolve().parents[3]
BOUND_S = 300


@pytest.fixture(scope="module")
def bento_home(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("bentoml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RISKGATE_", "BENTOML_"))}
    env.update(BENTOML_HOME=str(home), BENTOML_DO_NOT_TRACK="true")
    done = subprocess.run(
        [sys.executable, "-m", "serving.cli", "bento", "--model-dir", str(model_dir)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=BOUND_S,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Successfully built Bento" in done.stdout + done.stderr
    return env


def test_the_bento_holds_the_service_the_model_and_the_locked_requirements(bento_home):
    home = Path(bento_home["BENTOML_HOME"])
    (built,) = list((home / "bentos" / "riskgate").glob("*/bento.yaml"))
    info = yaml.safe_load(built.read_text())
    assert info["service"] == "serving.http.service:Riskgate"
    (model,) = info["models"]
    assert model["tag"].startswith("riskgate-model:")
    assert info["labels"]["mlflow_version"] == "none"  # from a local artifact, not the registry
    src = built.parent / "src"
    assert (src / "serving" / "http" / "service.py").exists()
    assert (src / "training" / "model.py").exists()
    # the online window walk ships compiled, as this tree built it (and its source)
    built_here = sorted(p.name for p in (ROOT / "features").glob("_windows*.so"))
    assert built_here, "the test tree has no built features/_windows.c (pip install -e .)"
    assert sorted(p.name for p in (src / "features").glob("_windows*.so")) == built_here
    assert (src / "features" / "_windows.c").exists()
    requirements = (built.parent / "env" / "python" / "requirements.txt").read_text()
    for pinned in ("lightgbm==", "bentoml==", "mlflow=="):
        assert pinned in requirements
    stored = home / "models" / "riskgate-model" / model["tag"].split(":")[1] / "model.yaml"
    labels = yaml.safe_load(stored.read_text())["labels"]
    assert labels["mlflow_version"] == "none"
    assert labels["feature_set_version"].startswith("fs-")


def test_bentoml_serve_of_the_bento_scores_with_the_packed_model_and_no_mlflow(
    bento_home: dict[str, str], tmp_path: Path
):
    port = free_port()
    env = {
        **bento_home,
        "RISKGATE_API_KEYS": KEY_SPEC,
        "RISKGATE_DB_URL": f"sqlite:///{tmp_path}/riskgate.db",
        "RISKGATE_STATE_PATH": str(tmp_path / "state.db"),
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:9",  # unreachable: must not be needed
    }
    bentoml = shutil.which("bentoml", path=str(Path(sys.executable).parent))
    assert bentoml is not None
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [bentoml, "serve", "riskgate:latest", "--host", "127.0.0.1", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        ready = False
        with httpx.Client(timeout=5.0) as client:
            for _ in range(int(READY_TIMEOUT_S * 4)):  # bounded: at most READY_TIMEOUT_S
                try:
                    if client.get(f"{base}/readyz").status_code == 200:
                        ready = True
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None:
                    break
                proc_wait(proc)
            assert ready, log_tail(log)
            response = client.post(f"{base}/score", json=EXAMPLE_PAYMENT, headers=BACKEND)
            metrics = client.get(f"{base}/metrics").text
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["decision_source"] == "model", body
        assert body["model_version"].startswith("bento:riskgate-model:")
        # the served online features walk in C (the gauge; that the Bento itself ships the
        # built walk is held by the test above: here an editable install may answer imports)
        assert "riskgate_online_features_compiled 1.0" in metrics, [
            line for line in metrics.splitlines() if "compiled" in line
        ]
        assert "mlflow" not in log.read_text().lower().replace("mlflow-none", "")
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


def proc_wait(proc: subprocess.Popen[bytes]) -> None:
    """A quarter-second pause between readiness polls (returns early if the server exits)."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=0.25)
