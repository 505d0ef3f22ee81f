"""The baseline: a bare BentoML service that only runs the model on a feature vector it is sent.

No features, no policy, no database, no auth: `POST /predict {"features": [f1, f2, ...]}` ->
`{"probability": p}`, with the same model artifact riskgate serves (`RiskModel.load` from the
directory in BARE_MODEL_DIR). Access log off, async handler, one worker, BentoML's default
OpenTelemetry spans: the reference riskgate's `/score` is compared with in bench_serving.py.
With BARE_NO_TRACING=1, /predict is left out of tracing as riskgate leaves /score out by
default: the floor of what serving this model through BentoML costs (reported next to it).

    BARE_MODEL_DIR=/path/to/model bentoml serve bare_service:Bare --working-dir benchmarks
"""

from __future__ import annotations

import math
import os

import bentoml
import numpy as np

from training.model import RiskModel


@bentoml.service(
    name="bare",
    logging={"access": {"enabled": False}},
    traffic={"timeout": 30, "max_concurrency": 512},
    # BentoML's default tracing (spans on every request), unless BARE_NO_TRACING is set: then
    # /predict is left out, as riskgate leaves /score out by default (the framework's floor)
    tracing={"excluded_urls": "/predict" if os.environ.get("BARE_NO_TRACING") else ""},
    workers=int(os.environ.get("BARE_WORKERS", "1")),
)
class Bare:
    def __init__(self) -> None:
        self.model = RiskModel.load(os.environ["BARE_MODEL_DIR"])
        self.width = len(self.model.features)
        self.model.predict_proba(np.zeros((1, self.width)))  # warm the booster

    @bentoml.api(route="/predict")
    async def predict(self, features: list[float | None]) -> dict[str, float]:
        """Calibrated fraud probability for one feature vector (null = missing)."""
        row = [math.nan if v is None else v for v in features]
        X = np.ascontiguousarray(np.asarray(row, dtype=np.float64).reshape(1, -1))
        return {"probability": float(self.model.predict_proba(X)[0])}
