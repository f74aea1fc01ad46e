"""What the fit and job routes do: check a fit against its model and data, queue it, follow it.

Everything a fit could fail on that can be known before it runs (state, caps, array names,
shapes) is checked here, so that a bad request is a 4xx now, not a failed job later.
"""

from __future__ import annotations

from service.config import Config
from service.errors import InvalidSpec, WrongState
from service.jobs.queue import JobQueue
from service.limits import check_cap
from service.model_service import check_if_match
from service.registry import JobRegistry, ModelRegistry
from service.registry.tables import Job
from service.tensors import array_names, check_dataset_arrays

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
        if model.state not in FITTABLE_STATES or model.compile is None:
            # An imported model can be trained yet uncompiled: its file's settings were not
            # on the allow-list.
            raise WrongState(f"Model '{model.id}' is {model.state} without compile settings; "
                             "compile it before fitting (POST /models/{id}/compile).")
        check_cap("epochs", request["epochs"], self.config.max_epochs, "MAX_EPOCHS")
        check_cap("batch_size", request["batch_size"], self.config.max_batch_size,
                  "MAX_BATCH_SIZE")
        dataset = self.datasets.get(tenant_id, request["dataset"])
        names = {"x": array_names(request.get("x"), model.inputs, "x", "input", InvalidSpec),
                 "y": array_names(request.get("y"), model.outputs, "y", "output", InvalidSpec)}
        check_dataset_arrays(dataset, names, model.inputs, InvalidSpec)
        if "validation_dataset" in request:
            validation = self.datasets.get(tenant_id, request["validation_dataset"])
            check_dataset_arrays(validation, names, model.inputs, InvalidSpec)
        if "validation_split" in request:
            _check_split(dataset.rows, request["validation_split"])
        if request.get("class_weight") and len(model.outputs) != 1:
            raise InvalidSpec("class_weight is for single-output models; this model has "
                              f"{len(model.outputs)} outputs.",
                              errors=[{"path": "class_weight", "message": "single output only"}])
        job = self.jobs.enqueue(model, dataset_id=dataset.id, request={**request, **names},
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


def _check_split(rows: int, split: float) -> None:
    validation_rows = int(rows * split)
    if validation_rows < 1 or validation_rows >= rows:
        raise InvalidSpec(
            f"validation_split {split} of {rows} rows leaves {validation_rows} for validation "
            f"and {rows - validation_rows} for training; both need at least one row.",
            errors=[{"path": "validation_split", "message": "leaves an empty split"}])
