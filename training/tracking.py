"""The only module that talks to MLflow: runs, the model artifact, the registry and its aliases.

Tracking defaults to `sqlite:///mlruns/mlflow.db` with artifacts under `mlruns/artifacts`
(MLflow 3 refuses the plain file store); `MLFLOW_TRACKING_URI` overrides it.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.model import RiskModel

MODEL_NAME = "riskgate"
EXPERIMENT = "riskgate"
DEFAULT_URI = "sqlite:///mlruns/mlflow.db"
# Given (pinned at logging time) so logging never spends ~10 s inferring requirements; the
# model code (training/mlflow_pyfunc.py) needs nothing else.
PIP_PACKAGES = ("mlflow", "lightgbm", "numpy", "pandas")


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_URI)


def _sqlite_root(uri: str) -> Path | None:
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).parent
    return None


def quiet() -> None:
    """MLflow's INFO lines and artifact progress bars say nothing a riskgate user acts on; its
    warnings stay. Called when riskgate connects, never at import time."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def connect(uri: str | None = None) -> Any:
    """Point MLflow at the store (creating a local store's folder) and return a client."""
    quiet()
    import mlflow
    from mlflow import MlflowClient

    uri = uri or tracking_uri()
    root = _sqlite_root(uri)
    if root is not None:
        root.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri)
    if client.get_experiment_by_name(EXPERIMENT) is None:
        location = None
        if root is not None:
            location = (root.resolve() / "artifacts").as_uri()
        client.create_experiment(EXPERIMENT, artifact_location=location)
    mlflow.set_experiment(EXPERIMENT)
    return client


BOOSTER_NAME = "booster"
PYFUNC_CODE = Path(__file__).with_name("mlflow_pyfunc.py")


def pip_requirements() -> list[str]:
    """What the logged model needs, pinned to the versions it was trained with."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in PIP_PACKAGES]


@dataclass(frozen=True)
class Logged:
    run_id: str
    version: str
    model_uri: str


def log_training(
    result: Any,
    params: dict[str, Any],
    figures: dict[str, Path],
    extra_metrics: dict[str, float],
    tags: dict[str, str],
) -> Logged:
    """One run: params, metrics, digest, figures, the model (registered with alias challenger)."""
    import mlflow
    from mlflow.models import infer_signature

    client = connect()
    with mlflow.start_run() as run, tempfile.TemporaryDirectory() as tmp:
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        mlflow.set_tags({"dataset_digest": result.dataset_digest, **tags})
        for policy, values in result.metrics.items():
            mlflow.log_metrics(
                {f"{policy}_{k}": float(v) for k, v in values.items() if np.isfinite(v)}
            )
        mlflow.log_metrics({k: float(v) for k, v in extra_metrics.items() if np.isfinite(v)})
        for path in figures.values():
            mlflow.log_artifact(str(path), artifact_path="plots")
        tables = Path(tmp) / "tables"
        tables.mkdir()
        (tables / "tradeoff.json").write_text(json.dumps(result.tradeoff, indent=2))
        (tables / "metrics.json").write_text(json.dumps(result.metrics, indent=2))
        mlflow.log_artifacts(str(tables), artifact_path="tables")

        model_dir = result.model.save(Path(tmp) / "riskmodel", compile=True)
        names = list(result.model.features)
        example = result.features.loc[:4, names].astype("float64")
        signature = infer_signature(example, result.model.predict_proba(example.to_numpy()))
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(PYFUNC_CODE),  # models from code: no pickle to load
            artifacts={"riskmodel": str(model_dir)},
            signature=signature,
            input_example=example,
            pip_requirements=pip_requirements(),
            registered_model_name=MODEL_NAME,
            await_registration_for=0,
        )
        # The native flavour beside the pyfunc, in the same run and unregistered: for those who
        # want the raw LightGBM booster (`mlflow.lightgbm.load_model`, SHAP, plots); the scores
        # riskgate serves are the pyfunc's (calibrated).
        booster = mlflow.lightgbm.log_model(
            result.model.booster,
            name=BOOSTER_NAME,
            signature=infer_signature(
                example, result.model.raw(np.ascontiguousarray(example.to_numpy()))
            ),
            pip_requirements=pip_requirements(),
        )
        mlflow.set_tag("booster_model_uri", booster.model_uri)
        version = str(info.registered_model_version)
        client.set_registered_model_alias(MODEL_NAME, "challenger", version)
        client.set_model_version_tag(MODEL_NAME, version, "run_id", run.info.run_id)
        client.set_model_version_tag(
            MODEL_NAME, version, "feature_set_version", result.model.feature_set_version
        )
        for key, value in tags.items():
            client.set_model_version_tag(MODEL_NAME, version, key, value)
        return Logged(run.info.run_id, version, f"models:/{MODEL_NAME}/{version}")


def alias_version(alias: str) -> Any | None:
    """The model version behind an alias, or None."""
    from mlflow.exceptions import MlflowException

    client = connect()
    try:
        return client.get_model_version_by_alias(MODEL_NAME, alias)
    except MlflowException:
        return None


def load_version(version: str) -> RiskModel:
    """Download a registered version's artifact and load it as a RiskModel."""
    import mlflow

    connect()
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{MODEL_NAME}/{version}", dst_path=tmp
        )
        found = next(Path(local).rglob("riskmodel.json"), None)
        if found is None:
            raise FileNotFoundError(f"model version {version} has no riskmodel artifact")
        return RiskModel.load(found.parent)


def load_alias(alias: str) -> tuple[RiskModel, str] | None:
    mv = alias_version(alias)
    if mv is None:
        return None
    return load_version(str(mv.version)), str(mv.version)


def run_metrics(run_id: str) -> dict[str, float]:
    client = connect()
    return dict(client.get_run(run_id).data.metrics)


def set_alias(alias: str, version: str, tags: dict[str, str]) -> None:
    client = connect()
    client.set_registered_model_alias(MODEL_NAME, alias, version)
    for key, value in tags.items():
        client.set_model_version_tag(MODEL_NAME, version, key, value)


def version_tags(version: str) -> dict[str, str]:
    client = connect()
    return dict(client.get_model_version(MODEL_NAME, version).tags)
