"""The registered MLflow model as code (MLflow's "models from code"), not a pickle.

MLflow copies this file into the model and runs it when the model is loaded, so it imports
nothing of riskgate: `mlflow.pyfunc.load_model("models:/riskgate@champion")` then works in any
environment with the pinned requirements MLflow records, and loading executes this readable
file rather than unpickling code. The booster (LightGBM text), calibration and feature list are
read as data from the `riskmodel` artifact (`booster.txt`, `riskmodel.json`, written by
`training.model.RiskModel.save`). Input: a DataFrame holding the model's feature columns.
Output: calibrated fraud probabilities, the same numbers as `RiskModel.predict_proba`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel

# Keep in step with training.model.TIE_BREAK (a test compares the two on every model).
TIE_BREAK = 1e-6


def calibrate(raw: np.ndarray, calibration: dict[str, Any]) -> np.ndarray:
    """training.model.Calibration.apply, re-stated without importing riskgate."""
    raw = np.asarray(raw, dtype=np.float64)
    if calibration["method"] == "isotonic":
        curve = np.interp(raw, calibration["x"], calibration["y"])
        return curve * (1 - TIE_BREAK) + TIE_BREAK * raw
    logit = np.log(np.clip(raw, 1e-12, 1 - 1e-12) / np.clip(1 - raw, 1e-12, 1.0))
    return 1.0 / (1.0 + np.exp(-(calibration["a"] * logit + calibration["b"])))


class RiskgateModel(PythonModel):
    """A DataFrame of the model's features -> calibrated fraud probability."""

    def load_context(self, context: Any) -> None:
        import lightgbm as lgb

        folder = Path(context.artifacts["riskmodel"])
        meta = json.loads((folder / "riskmodel.json").read_text())
        self.features = list(meta["features"])
        self.calibration = meta["calibration"]
        self.booster = lgb.Booster(model_str=(folder / "booster.txt").read_text())

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> np.ndarray:
        missing = [f for f in self.features if f not in model_input.columns]
        if missing:
            raise ValueError(f"model input lacks feature columns: {', '.join(missing)}")
        X = np.ascontiguousarray(model_input[self.features].to_numpy(np.float64))
        raw = np.asarray(self.booster.predict(X, num_threads=1), dtype=np.float64)
        return calibrate(raw, self.calibration)


set_model(RiskgateModel())
