"""`riskgate bento`: the champion into BentoML's model store, then `bentoml build` of the Bento.

`bentofile.yaml` (the project root) declares the Bento: the service, riskgate's source, the
locked dependencies (requirements.lock) and the model `riskgate-model:latest`, which BentoML
copies from its model store into the Bento at build time. This command puts the champion there
first, read from the MLflow registry (or a local artifact directory), with its MLflow version and
run in the model's labels and metadata, so the Bento serves with no MLflow reachable
(the service loads the model its Bento packs; `RISKGATE_BENTO_MODEL` names one explicitly).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

BENTO_MODEL = "riskgate-model"


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser(
        "bento", help="import the champion into BentoML's model store and build the Bento"
    )
    s.add_argument("--alias", default="champion", help="MLflow registry alias to package")
    s.add_argument("--model-dir", help="package a local model artifact directory instead")
    s.add_argument("--no-build", action="store_true", help="only import the model")
    s.set_defaults(func=bento)


def import_model(model: Any, labels: dict[str, str], metadata: dict[str, Any]) -> str:
    """Save a RiskModel's artifact as a new version of `riskgate-model`; returns its tag."""
    import bentoml

    with bentoml.models.create(BENTO_MODEL, labels=labels, metadata=metadata) as stored:
        model.save(stored.path)
    return str(stored.tag)


def bento(args: argparse.Namespace) -> int:
    from training.model import RiskModel

    if args.model_dir:
        model = RiskModel.load(args.model_dir)
        labels = {"source": "local", "mlflow_version": "none"}
        metadata: dict[str, Any] = {"model_dir": str(Path(args.model_dir).resolve())}
    else:
        from training import tracking

        mv = tracking.alias_version(args.alias)
        if mv is None:
            print(f"error: no model version under alias {args.alias!r}", file=sys.stderr)
            return 2
        model = tracking.load_version(str(mv.version))
        labels = {"source": "mlflow", "mlflow_version": str(mv.version), "alias": args.alias}
        metadata = {
            "mlflow_model_uri": f"models:/{tracking.MODEL_NAME}/{mv.version}",
            "mlflow_run_id": str(mv.run_id),
            "tracking_uri": tracking.tracking_uri(),
        }
    labels["feature_set_version"] = model.feature_set_version
    tag = import_model(model, labels, metadata)
    described = ", ".join(f"{k}={v}" for k, v in labels.items())
    print(f"imported {tag} into the BentoML model store ({described})", flush=True)
    if args.no_build:
        return 0
    return build(tag, labels)


def build(tag: str, labels: dict[str, str]) -> int:
    """`bentoml build` with bentofile.yaml pinned to the model version just imported (the file
    itself says `latest`, so a plain `bentoml build` packs the newest import)."""
    spec = Path("bentofile.yaml")
    if not spec.exists():
        print("error: run `riskgate bento` in the project folder (bentofile.yaml)", file=sys.stderr)
        return 2
    pinned = spec.read_text().replace(f"{BENTO_MODEL}:latest", tag)
    bentoml = shutil.which("bentoml", path=str(Path(sys.executable).parent)) or "bentoml"
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": os.environ.get("BENTOML_DO_NOT_TRACK", "true")}
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="bentofile-") as f:
        f.write(pinned)
        f.flush()
        argv = [bentoml, "build", "-f", f.name, "--output", "default"]
        argv += [
            arg
            for k in ("mlflow_version", "feature_set_version")
            for arg in ("--label", f"{k}={labels[k]}")
        ]
        return subprocess.call(argv, env=env)
