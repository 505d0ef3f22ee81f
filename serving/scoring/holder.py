"""The serving model and the online executor for its feature list, swapped together on reload;
an artifact trained on other feature definitions is refused."""

from __future__ import annotations

from dataclasses import dataclass

from features.online import OnlineFeatures
from features.registry import feature_set_version
from features.registry import select as select_features
from features.state import StateStore
from training.model import RiskModel


class ArtifactMismatchError(RuntimeError):
    """The model was trained on feature definitions this code does not have."""


def check_artifact(model: RiskModel) -> None:
    """Refuse an artifact whose feature list or definitions differ from the code's."""
    try:
        declared = select_features(model.features)
    except KeyError as exc:
        raise ArtifactMismatchError(str(exc)) from None
    expected = feature_set_version(declared)
    if expected != model.feature_set_version:
        raise ArtifactMismatchError(
            f"model feature-set version {model.feature_set_version} differs from this code's "
            f"{expected} for the same feature names: retrain with this code"
        )


@dataclass(frozen=True)
class Loaded:
    """A model with the online executor for its feature list (swapped together on reload)."""

    model: RiskModel | None
    version: str | None
    online: OnlineFeatures


class ModelHolder:
    """The serving model; `swap` replaces it atomically (in-flight requests keep theirs)."""

    def __init__(self, store: StateStore, model: RiskModel | None, version: str | None) -> None:
        self._store = store
        self._loaded = self._build(model, version)

    def _build(self, model: RiskModel | None, version: str | None) -> Loaded:
        if model is None:
            from features.registry import FEATURES

            return Loaded(None, None, OnlineFeatures(self._store, FEATURES))
        check_artifact(model)
        return Loaded(model, version, OnlineFeatures(self._store, select_features(model.features)))

    @property
    def current(self) -> Loaded:
        return self._loaded

    @property
    def store(self) -> StateStore:
        return self._store

    def swap(self, model: RiskModel, version: str) -> None:
        self._loaded = self._build(model, version)
