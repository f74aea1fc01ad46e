"""One fit, in a process of its own: load the model, fit with progress, record the version.

Runs where the trainer puts it (a child of the local trainer, or a Celery worker later).
It talks to the registry and the artifact store only, never to the web workers. A crash
here ends this job alone; the trainer then records it as failed.
"""

from __future__ import annotations

import logging

from service.config import Config
from service.registry import Database, JobRegistry
from service.registry.tables import Dataset, Job, Model
from service.storage import ArtifactStore, atomic_path, sha256_of

log = logging.getLogger(__name__)
MAX_ERROR_CHARS = 1000


class JobCancelled(Exception):
    """The job was cancelled; the model stays as it was before the fit."""


def describe_error(error: BaseException) -> str:
    """The reason in words, as Keras or TensorFlow said it: no traceback, bounded length."""
    message = str(error).strip() or type(error).__name__
    # TensorFlow appends graph and stack details after the first lines; they help nobody.
    lines = [line for line in message.splitlines() if line.strip()][:6]
    text = f"{type(error).__name__}: " + " ".join(lines)
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


def run_job(job_id: str, config: Config) -> str:
    """Run job `job_id` to its end; return its final state."""
    database = Database(config.database_url, config.data_dir)
    jobs = JobRegistry(database)
    store = ArtifactStore(config.data_dir)
    progress = None
    try:
        with database.session() as session:
            job = session.get(Job, job_id)
            model_row = session.get(Model, job.model_id)
            dataset = session.get(Dataset, job.dataset_id)
            validation = (session.get(Dataset, job.request["validation_dataset"])
                          if job.request.get("validation_dataset") else None)
        if model_row is None or dataset is None:
            raise LookupError("the model or the dataset was deleted before the fit started")
        from service.jobs.progress import ProgressReporter

        progress = ProgressReporter(jobs, job)
        _fit_and_record(job, model_row, dataset, validation, store, jobs, progress)
        return "succeeded"
    except JobCancelled:
        jobs.end(job_id, "cancelled", history=progress.history if progress else None)
        return "cancelled"
    except Exception as error:  # noqa: BLE001 - any failure is the job's, reported in words
        log.warning("job %s failed: %s", job_id, error)
        jobs.end(job_id, "failed", error=describe_error(error),
                 history=progress.history if progress else None)
        return "failed"
    finally:
        database.engine.dispose()


def _fit_and_record(job, model_row, dataset, validation, store, jobs, progress) -> None:
    import keras

    from service.datasets import open_arrays

    request = job.request
    model = keras.saving.load_model(store.artifact_path(model_row.id, model_row.artifact),
                                    safe_mode=True)
    x, y = _inputs_and_targets(open_arrays(store, dataset, request["x"] + request["y"]),
                               request)
    fit_options = {}
    if validation is not None:
        fit_options["validation_data"] = _inputs_and_targets(
            open_arrays(store, validation, request["x"] + request["y"]), request)
    elif request.get("validation_split"):
        fit_options["validation_split"] = request["validation_split"]
    if request.get("class_weight"):
        fit_options["class_weight"] = {int(k): v for k, v in request["class_weight"].items()}
    callbacks = [progress]
    if request.get("early_stopping"):
        callbacks.append(keras.callbacks.EarlyStopping(**request["early_stopping"]))

    model.fit(x, y, epochs=request["epochs"], batch_size=request["batch_size"],
              shuffle=request.get("shuffle", True), callbacks=callbacks, verbose=0,
              **fit_options)
    if progress.cancelled:
        raise JobCancelled()

    number = jobs.next_version_number(model_row.id)
    final = store.version_path(model_row.id, number)
    with atomic_path(final) as temporary:
        model.save(temporary)
    try:
        jobs.succeed(job.id, number=number, sha256=sha256_of(final),
                     size=final.stat().st_size, metrics=progress.final_metrics(),
                     history=progress.history)
    except Exception:
        # No row points at the file: remove it, so no unlisted version lingers.
        store.remove_file(final)
        raise


def _inputs_and_targets(arrays: dict, request: dict):
    def pick(names):
        return arrays[names[0]] if len(names) == 1 else [arrays[name] for name in names]

    return pick(request["x"]), pick(request["y"])
