"""What the predict, evaluate and version routes do: resolve the version, check, compute."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service.config import Config
from service.errors import ArtifactCorrupt, WrongState
from service.inference.inputs import (
    checked_inputs,
    columns_by_name,
    columns_from_rows,
    dataset_arrays,
    inline_arrays,
)
from service.inference.runtime import (
    MODEL_CACHE_SIZE,
    LoadedModel,
    ModelCache,
    evaluate_arrays,
    load_version,
    predict_arrays,
)
from service.limits import check_cap
from service.registry import ModelRegistry, VersionRegistry
from service.registry.tables import Model, Version
from service.storage import ArtifactStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Artifact:
    path: Path
    sha256: str
    download_name: str


class InferenceService:
    def __init__(self, models: ModelRegistry, versions: VersionRegistry, datasets,
                 store: ArtifactStore, config: Config, cache: ModelCache | None = None):
        self.models = models
        self.versions = versions
        self.datasets = datasets
        self.store = store
        self.config = config
        self.cache = cache or ModelCache(MODEL_CACHE_SIZE)

    def list_versions(self, tenant_id: str, model_id: str) -> tuple[Model, list[Version]]:
        model = self.models.get(tenant_id, model_id)
        return model, self.versions.list(tenant_id, model.id)

    def get_version(self, tenant_id: str, model_id: str, number: int) -> Version:
        model = self.models.get(tenant_id, model_id)
        return self.versions.get(tenant_id, model.id, number)

    def artifact(self, tenant_id: str, model_id: str, number: int) -> Artifact:
        model = self.models.get(tenant_id, model_id)
        version = self.versions.get(tenant_id, model.id, number)
        path = self.store.version_path(model.id, version.number)
        if not path.is_file():
            raise _missing(model, version)
        return Artifact(path, version.sha256, f"{model.name}-v{version.number}.keras")

    def predict(self, tenant_id: str, model_id: str, request: dict) -> dict:
        model, version = self._resolve(tenant_id, model_id, request.get("version"))
        if "instances" in request:
            field_name, columns = "instances", columns_from_rows(request["instances"],
                                                                 model.inputs)
        else:
            field_name, columns = "inputs", columns_by_name(request["inputs"], model.inputs,
                                                            "inputs")
        outputs = self.infer(model, version, columns, field_name)
        if len(outputs) == 1:
            predictions = outputs[0].tolist()
        else:
            predictions = {output["name"]: array.tolist()
                           for output, array in zip(model.outputs, outputs, strict=True)}
        return {"predictions": predictions, "model_version": version.number}

    def infer(self, model: Model, version: Version, columns: dict,
              field_name: str = "inputs") -> list[np.ndarray]:
        """The one prediction path of every protocol (native, /v1, /v2).

        Args:
            model, version: what to run, as resolved by the caller.
            columns: {input name: a JSON array or a numpy array}, one per model input.
            field_name: where the inputs were in the request, for error messages.

        Returns:
            One array per model output, in the model's output order.
        """
        arrays = checked_inputs(columns, model.inputs, self.config.max_inline_elements,
                                field_name)
        return predict_arrays(self._load(model, version, for_evaluate=False), arrays)

    def resolve_named(self, tenant_id: str, name: str,
                      number: int | None = None) -> tuple[Model, Version]:
        """The model called `name` and its version `number` (default: the latest)."""
        model = self.models.get_by_name(tenant_id, name)
        return self._resolve(tenant_id, model.id, number)

    def evaluate(self, tenant_id: str, model_id: str, request: dict) -> dict:
        model, version = self._resolve(tenant_id, model_id, request.get("version"))
        batch_size = request["batch_size"]
        check_cap("batch_size", batch_size, self.config.max_batch_size, "MAX_BATCH_SIZE")
        if "dataset" in request:
            dataset = self.datasets.get(tenant_id, request["dataset"])
            x, y = dataset_arrays(self.store, dataset, model, request)
        else:
            x, y = inline_arrays(model, request, self.config.max_inline_elements)
        loaded = self._load(model, version, for_evaluate=True)
        metrics = evaluate_arrays(loaded, x, y, batch_size)
        return {**metrics, "model_version": version.number}

    def _resolve(self, tenant_id: str, model_id: str, number: int | None) -> tuple[Model, Version]:
        model = self.models.get(tenant_id, model_id)
        number = number or model.version
        if number is None:
            raise WrongState(f"Model '{model.id}' has no trained version yet (it is "
                             f"{model.state}); fit it first (POST /models/{model.id}/fit), "
                             "then predict or evaluate.")
        return model, self.versions.get(tenant_id, model.id, number)

    def _load(self, model: Model, version: Version, *, for_evaluate: bool) -> LoadedModel:
        path = self.store.version_path(model.id, version.number)
        if not path.is_file():
            raise _missing(model, version)
        key = (model.id, version.number, version.sha256, for_evaluate)
        return self.cache.get(key, lambda: load_version(
            path, version.sha256, for_evaluate=for_evaluate,
            compile_spec=model.compile if for_evaluate else None,
            label=f"model '{model.id}' version {version.number}"))


def _missing(model: Model, version: Version) -> ArtifactCorrupt:
    log.error("the file of model %s version %s is missing", model.id, version.number)
    return ArtifactCorrupt(f"The file of model '{model.id}' version {version.number} is "
                           "missing from the artifact store; the error is logged.")
