"""Jobs in the registry: a job and its model always move together."""

import pytest

from service.errors import PreconditionFailed, QueueFull, WrongState
from service.job_events import job_events, resume_point
from service.registry import Database, JobRegistry, ModelRegistry, VersionRegistry
from service.registry.tables import DEFAULT_TENANT, Job

FIT = {"epochs": 3, "batch_size": 8, "x": ["x"], "y": ["y"], "dataset": "d" * 32}


@pytest.fixture
def registries(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'registry.sqlite3'}")
    database.migrate(tmp_path)
    yield ModelRegistry(database), JobRegistry(database), VersionRegistry(database)
    database.engine.dispose()


def _compiled_model(models, name="m"):
    return models.create(DEFAULT_TENANT, name=name, type="sequential", state="compiled",
                         spec={"type": "sequential", "layers": []}, layers=[], inputs=[],
                         outputs=[], params=1, summary="", artifact="compiled.keras")


def _enqueue(jobs, model, **caps):
    return jobs.enqueue(model, dataset_id="d" * 32, request=FIT,
                        max_queued=caps.get("max_queued", 10),
                        max_queued_per_model=caps.get("per_model", 3))


def test_queue_claim_succeed_makes_a_version_and_a_trained_model(registries):
    models, jobs, versions = registries
    model = _compiled_model(models)
    job = _enqueue(jobs, model)
    assert models.get(DEFAULT_TENANT, model.id).state == "training"

    claimed = jobs.claim_next("host:1")
    assert (claimed.id, claimed.state, claimed.runner) == (job.id, "running", "host:1")
    assert jobs.claim_next("host:1") is None  # one job per model at a time

    assert jobs.report_progress(job.id, epoch=1, progress=0.4) is False
    number = jobs.next_version_number(model.id)
    jobs.succeed(job.id, number=number, sha256="a" * 64, size=10, metrics={"loss": 0.5},
                 history={"loss": [0.9, 0.7, 0.5]})
    done = jobs.get(DEFAULT_TENANT, job.id)
    assert (done.state, done.version, done.epoch, done.progress) == ("succeeded", 1, 3, 1.0)
    trained = models.get(DEFAULT_TENANT, model.id)
    assert (trained.state, trained.version, trained.artifact) == ("trained", 1, "v1.keras")
    assert [v.number for v in versions.list(DEFAULT_TENANT, model.id)] == [1]


def test_a_failed_fit_leaves_the_model_as_it_was(registries):
    models, jobs, _ = registries
    model = _compiled_model(models)
    job = _enqueue(jobs, model)
    jobs.claim_next("host:1")
    jobs.end(job.id, "failed", error="ValueError: bad")
    assert models.get(DEFAULT_TENANT, model.id).state == "compiled"
    assert jobs.get(DEFAULT_TENANT, job.id).error == "ValueError: bad"
    jobs.end(job.id, "cancelled")  # an ended job stays as it ended
    assert jobs.get(DEFAULT_TENANT, job.id).state == "failed"


def test_model_stays_training_while_another_job_waits(registries):
    models, jobs, _ = registries
    model = _compiled_model(models)
    first = _enqueue(jobs, model)
    second = _enqueue(jobs, models.get(DEFAULT_TENANT, model.id))
    jobs.claim_next("host:1")
    jobs.end(first.id, "failed", error="x")
    assert models.get(DEFAULT_TENANT, model.id).state == "training"
    assert jobs.claim_next("host:1").id == second.id


def test_cancel_queued_is_immediate_running_is_cancelling_ended_is_409(registries):
    models, jobs, _ = registries
    model = _compiled_model(models)
    queued = _enqueue(jobs, model)
    assert jobs.request_cancel(DEFAULT_TENANT, queued.id).state == "cancelled"
    assert models.get(DEFAULT_TENANT, model.id).state == "compiled"
    with pytest.raises(WrongState, match="already ended"):
        jobs.request_cancel(DEFAULT_TENANT, queued.id)

    running = _enqueue(jobs, models.get(DEFAULT_TENANT, model.id))
    jobs.claim_next("host:1")
    assert jobs.request_cancel(DEFAULT_TENANT, running.id).state == "cancelling"
    assert jobs.report_progress(running.id, epoch=0, progress=0.1) is True
    assert jobs.cancel_requested([running.id]) == {running.id}


def test_queue_caps_answer_429_naming_the_setting(registries):
    models, jobs, _ = registries
    model = _compiled_model(models)
    _enqueue(jobs, model, per_model=1)
    with pytest.raises(QueueFull, match="MAX_QUEUED_JOBS_PER_MODEL"):
        _enqueue(jobs, models.get(DEFAULT_TENANT, model.id), per_model=1)
    other = _compiled_model(models, "other")
    with pytest.raises(QueueFull, match="KERAS_SERVICE_MAX_QUEUED_JOBS"):
        _enqueue(jobs, other, max_queued=1)
    assert models.get(DEFAULT_TENANT, other.id).state == "compiled"


def test_enqueue_on_a_stale_model_is_refused(registries):
    models, jobs, _ = registries
    model = _compiled_model(models)
    models.update(models.get(DEFAULT_TENANT, model.id), tags=["changed"])
    with pytest.raises(PreconditionFailed):
        _enqueue(jobs, model)


def _job(state, history, epochs=3, **fields):
    return Job(id="j" * 32, state=state, history=history, epochs=epochs,
               epoch=fields.get("epoch", 0), progress=fields.get("progress", 0.0),
               error=fields.get("error"), version=fields.get("version"))


def test_events_replay_epochs_then_end_and_resume_after_last_event_id():
    states = iter([
        _job("running", {"loss": [0.9]}, epoch=1, progress=0.33),
        _job("succeeded", {"loss": [0.9, 0.8, 0.7]}, epoch=3, progress=1.0, version=1),
    ])
    events = list(job_events(lambda: next(states), poll_s=0))
    kinds = [e.split("event: ")[1].split("\n")[0] for e in events]
    assert kinds == ["epoch", "progress", "epoch", "epoch", "end"]
    assert events[0].startswith("id: 1\n") and '"loss":0.9' in events[0]
    assert '"version":1' in events[-1]

    finished = _job("succeeded", {"loss": [0.9, 0.8, 0.7]}, epoch=3, version=1)
    resumed = list(job_events(lambda: finished, last_event_id="2", poll_s=0))
    assert [e.split("\n")[0] for e in resumed] == ["id: 3", "event: end"]


@pytest.mark.parametrize(("header", "expected"), [(None, 0), ("4", 4), ("x", 0), ("-3", 0)])
def test_resume_point(header, expected):
    assert resume_point(header) == expected
