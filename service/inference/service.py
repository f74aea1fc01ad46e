"""What the predict, evaluate and version routes do: resolve the version, check, compute."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service import metrics
from service.config import Config
from service.errors import ArtifactCorrupt, WrongState
from service.inference.batching import BatchPolicy
from service.inference.inputs import checked_inputs, dataset_arrays, inline_arrays
from service.inference.metadata import ServingMetadata
from service.inference.payloads import PredictRequest
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


@dataclass(frozen=True)
class Prediction:
    model: Model
    version: Version
    outputs: list[np.ndarray]  # one per model output, in the model's order


class InferenceService:
    def __init__(self, models: ModelRegistry, versions: VersionRegistry, datasets,
                 store: ArtifactStore, config: Config, cache: ModelCache | None = None):
        self.models = models
        self.versions = versions
        self.datasets = datasets
        self.store = store
        self.config = config
        self.cache = cache or ModelCache(MODEL_CACHE_SIZE)
        # What predict and evaluate resolve through: no registry query per request.
        self.metadata = ServingMetadata(models, versions, models.db.stamp,
                                        config.serving_refresh_ms / 1000,
                                        self.cache.model_ids, self.cache.drop_models)

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

    def predict(self, tenant_id: str, model_id: str, request: PredictRequest) -> Prediction:
        """The native predict route: a JSON or binary request of model `model_id`."""
        model, version = self._resolve(tenant_id, model_id, request.version)
        columns, field_name = request.columns(model, self.config.max_inline_elements)
        outputs = self.infer(model, version, columns, field_name,
                             plain_numbers=request.plain_numbers)
        return Prediction(model, version, outputs)

    def infer(self, model: Model, version: Version, columns: dict,
              field_name: str = "inputs", *, plain_numbers: bool = False) -> list[np.ndarray]:
        """The one prediction path of every protocol (native, /v1, /v2).

        Args:
            model, version: what to run, as resolved by the caller.
            columns: {input name: a JSON array or a numpy array}, one per model input.
            field_name: where the inputs were in the request, for error messages.
            plain_numbers: the JSON body holds no true/false/null
                (`inputs.has_json_literals`): its lists may be converted by numpy at once.

        Returns:
            One array per model output, in the model's output order.

        Raises:
            Busy: the model batches requests and its queue is full (503, Retry-After).
        """
        arrays = checked_inputs(columns, model.inputs, self.config.max_inline_elements,
                                field_name, plain_numbers)
        metrics.record_prediction(model.id, arrays[0].shape[0])
        loaded = self._load(model, version, for_evaluate=False)

        def run(batch: list[np.ndarray]) -> list[np.ndarray]:
            metrics.observe_batch(model.id, batch[0].shape[0])  # rows per model call
            return predict_arrays(loaded, batch)

        policy = BatchPolicy.of(model.batching)
        if policy is not None and arrays[0].shape[0] < policy.max_batch_size:
            return loaded.batcher_for(policy, _label(model, version), run).submit(arrays)
        return run(arrays)

    def resolve_named(self, tenant_id: str, name: str,
                      number: int | None = None) -> tuple[Model, Version]:
        """The model called `name` and its version `number` (default: the latest)."""
        model = self.metadata.model_named(tenant_id, name)
        return self._version_of(tenant_id, model, number)

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
        return self._version_of(tenant_id, self.metadata.model(tenant_id, model_id), number)

    def _version_of(self, tenant_id: str, model: Model,
                    number: int | None) -> tuple[Model, Version]:
        number = number or model.version
        if number is None:
            raise WrongState(f"Model '{model.id}' has no trained version yet (it is "
                             f"{model.state}); fit it first (POST /models/{model.id}/fit), "
                             "then predict or evaluate.")
        return model, self.metadata.version(tenant_id, model, number)

    def _load(self, model: Model, version: Version, *, for_evaluate: bool) -> LoadedModel:
        key = (model.id, version.number, version.sha256, for_evaluate)
        return self.cache.get(key, lambda: self._load_file(model, version, for_evaluate))

    def _load_file(self, model: Model, version: Version, for_evaluate: bool) -> LoadedModel:
        path = self.store.version_path(model.id, version.number)
        if not path.is_file():
            raise _missing(model, version)
        return load_version(path, version.sha256, for_evaluate=for_evaluate,
                            compile_spec=model.compile if for_evaluate else None,
                            label=_label(model, version),
                            lite_after_calls=self.config.lite_after_calls
                            if self.config.lite_runtime else None, model_id=model.id)


def _label(model: Model, version: Version) -> str:
    return f"model '{model.id}' version {version.number}"


def _missing(model: Model, version: Version) -> ArtifactCorrupt:
    log.error("the file of model %s version %s is missing", model.id, version.number)
    return ArtifactCorrupt(f"The file of model '{model.id}' version {version.number} is "
                           "missing from the artifact store; the error is logged.")
