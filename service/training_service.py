"""What the fit and job routes do: check a fit against its model and data, queue it, follow it.

Everything a fit could fail on that can be known before it runs (state, caps, array names,
shapes) is checked here, so that a bad request is a 4xx now, not a failed job later.
"""

from __future__ import annotations

from service.config import Config
from service.errors import InvalidSpec, LimitExceeded, WrongState
from service.jobs.queue import JobQueue
from service.model_service import check_if_match
from service.registry import JobRegistry, ModelRegistry
from service.registry.tables import Job, Model

FITTABLE_STATES = ("compiled", "trained", "training")


class TrainingService:
    def __init__(self, models: ModelRegistry, jobs: JobRegistry, datasets, queue: JobQueue,
                 config: Config):
        self.models = models
        self.jobs = jobs
        self.datasets = datasets
        self.queue = queue
        self.config = config

    def fit(self, tenant_id: str, model_id: str, request: dict, if_match=None) -> Job:
        model = self.models.get(tenant_id, model_id)
        check_if_match(model, if_match)
        if model.state not in FITTABLE_STATES:
            raise WrongState(f"Model '{model.id}' is {model.state}; compile it before fitting "
                             "(POST /models/{id}/compile).")
        self._check_caps(request)
        dataset = self.datasets.get(tenant_id, request["dataset"])
        accepted = {**request,
                    "x": _array_names(request.get("x"), model.inputs, "x", "inputs"),
                    "y": _array_names(request.get("y"), model.outputs, "y", "outputs")}
        _check_arrays(dataset, accepted, model)
        if "validation_dataset" in request:
            validation = self.datasets.get(tenant_id, request["validation_dataset"])
            _check_arrays(validation, accepted, model)
        if "validation_split" in request:
            _check_split(dataset.rows, request["validation_split"])
        if request.get("class_weight") and len(model.outputs) != 1:
            raise InvalidSpec("class_weight is for single-output models; this model has "
                              f"{len(model.outputs)} outputs.",
                              errors=[{"path": "class_weight", "message": "single output only"}])
        job = self.jobs.enqueue(model, dataset_id=dataset.id, request=accepted,
                                max_queued=self.config.max_queued_jobs,
                                max_queued_per_model=self.config.max_queued_jobs_per_model)
        self.queue.submit(job.id)
        return job

    def get(self, tenant_id: str, job_id: str) -> Job:
        return self.jobs.get(tenant_id, job_id)

    def list(self, tenant_id: str, **query) -> tuple[list[Job], int]:
        return self.jobs.list(tenant_id, **query)

    def cancel(self, tenant_id: str, job_id: str) -> Job:
        job = self.jobs.request_cancel(tenant_id, job_id)
        self.queue.cancel(job.id)
        return job

    def _check_caps(self, request: dict) -> None:
        for field, cap, setting in (("epochs", self.config.max_epochs, "MAX_EPOCHS"),
                                    ("batch_size", self.config.max_batch_size, "MAX_BATCH_SIZE")):
            if request[field] > cap:
                raise LimitExceeded(
                    f"{field} is {request[field]}, over the cap of {cap} "
                    f"(KERAS_SERVICE_{setting}).",
                    errors=[{"path": field, "message": f"at most {cap}"}])


def format_shape(shape) -> str:
    """(None, 100), the way Keras prints shapes."""
    items = ["None" if dim is None else str(dim) for dim in shape]
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def _array_names(given, tensors: list[dict], default: str, kind: str) -> list[str]:
    """The dataset arrays feeding each model input (or output), in the model's order."""
    names = [tensor["name"] for tensor in tensors]
    field = default
    if given is None:
        return [default] if len(names) == 1 else names
    if isinstance(given, str):
        if len(names) != 1:
            raise InvalidSpec(
                f"The model has {len(names)} {kind} ({', '.join(names)}); give {field} as a "
                f"list in that order or as {{{kind[:-1]}_name: array_name}}.",
                errors=[{"path": field, "message": f"one array per {kind[:-1]}"}])
        given = [given]
    if isinstance(given, dict):
        if set(given) != set(names):
            raise InvalidSpec(f"{field} names {sorted(given)}; the model's {kind} are {names}.",
                              errors=[{"path": field, "message": f"keys must be {names}"}])
        given = [given[name] for name in names]
    if not isinstance(given, list) or len(given) != len(names) or not all(
            isinstance(item, str) for item in given):
        raise InvalidSpec(f"{field} must name {len(names)} array(s), one per model "
                          f"{kind[:-1]} ({', '.join(names)}); received {given!r}.",
                          errors=[{"path": field, "message": "array names"}])
    return given


def _check_arrays(dataset, accepted: dict, model: Model) -> None:
    for field, tensors in (("x", model.inputs), ("y", model.outputs)):
        for array_name, tensor in zip(accepted[field], tensors, strict=True):
            array = dataset.arrays.get(array_name)
            if array is None:
                raise InvalidSpec(
                    f"Dataset '{dataset.id}' has no array '{array_name}'; it has "
                    f"{', '.join(sorted(dataset.arrays))}.",
                    errors=[{"path": field, "message": f"no array '{array_name}'"}])
            if field == "x" and not _fits(array["shape"], tensor["shape"]):
                raise InvalidSpec(
                    f"input '{tensor['name']}' expects {format_shape(tensor['shape'])} "
                    f"{tensor['dtype']}, dataset {array_name} is {format_shape(array['shape'])} "
                    f"{array['dtype']}.",
                    errors=[{"path": field, "message": "shape does not fit the model input"}])


def _fits(array_shape: list, tensor_shape: list) -> bool:
    return len(array_shape) == len(tensor_shape) and all(
        expected is None or expected == actual
        for expected, actual in zip(tensor_shape[1:], array_shape[1:], strict=True))


def _check_split(rows: int, split: float) -> None:
    validation_rows = int(rows * split)
    if validation_rows < 1 or validation_rows >= rows:
        raise InvalidSpec(
            f"validation_split {split} of {rows} rows leaves {validation_rows} for validation "
            f"and {rows - validation_rows} for training; both need at least one row.",
            errors=[{"path": "validation_split", "message": "leaves an empty split"}])
