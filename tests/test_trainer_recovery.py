"""What the trainer finds after a crash: jobs whose runner is gone, files they never recorded.

These are the states a kill -9 leaves (tests/test_e2e_crash.py makes them for real, at
random points); here each one is made exactly, so the outcome does not depend on timing.
"""

import os
import socket
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from service.config import Config
from service.jobs.trainer import INTERRUPTED, LocalTrainer
from service.registry import ModelRegistry, VersionRegistry
from service.registry.tables import DEFAULT_TENANT, Job, utcnow

FIT = {"epochs": 3, "batch_size": 8, "x": ["x"], "y": ["y"], "dataset": "d" * 32}


@pytest.fixture
def trainer(tmp_path):
    config = Config.from_env(environ={}, data_dir=str(tmp_path))
    trainer = LocalTrainer(config)
    trainer.database.migrate(tmp_path)
    yield trainer
    trainer.database.engine.dispose()


def _running_job(trainer: LocalTrainer, runner_pid: int, *, host=None, model_id=None,
                 claimed_ago=timedelta(0), silent_for=timedelta(0)) -> Job:
    """A job running on `host` (this one by default) in process `runner_pid`."""
    models = ModelRegistry(trainer.database)
    model = models.get(DEFAULT_TENANT, model_id) if model_id else models.create(
        DEFAULT_TENANT, name=f"m-{os.urandom(4).hex()}", type="sequential", state="compiled",
        spec={"type": "sequential", "layers": []}, layers=[], inputs=[], outputs=[], params=1,
        summary="", artifact="compiled.keras")
    job = trainer.jobs.enqueue(model, dataset_id="d" * 32, request=FIT, max_queued=10,
                               max_queued_per_model=3)
    trainer.jobs.claim_next(f"{host or socket.gethostname()}:{runner_pid}")
    with trainer.database.transaction() as session:
        claimed = session.get(Job, job.id)
        claimed.started_at = utcnow() - claimed_ago
        claimed.heartbeat_at = utcnow() - silent_for
    return trainer.jobs.by_id(job.id)


def _recorded_version_1(trainer: LocalTrainer, content: bytes) -> tuple[Job, Path]:
    """A fit that ended recording version 1, and the model's folder with that file."""
    job = _running_job(trainer, _dead_pid())
    trainer.jobs.succeed(job.id, number=1, sha256="a" * 64, size=len(content), metrics={},
                         history={"loss": [0.5]})
    folder = trainer.store.model_dir(job.model_id)
    folder.mkdir(parents=True)
    (folder / "v1.keras").write_bytes(content)
    return job, folder


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_a_job_whose_runner_pid_now_belongs_to_a_newer_process_is_interrupted(trainer):
    # After a restart the old runner's pid can be any new process's: one that started
    # after the job was claimed cannot be the job's runner.
    newcomer = subprocess.Popen(["sleep", "60"])
    try:
        orphan = _running_job(trainer, newcomer.pid, claimed_ago=timedelta(hours=1))
        # A live runner that was already running when it claimed its job keeps it.
        alive = _running_job(trainer, os.getppid())
        trainer.fail_orphaned_jobs()
    finally:
        newcomer.kill()
        newcomer.wait()
    assert (trainer.jobs.by_id(orphan.id).state,
            trainer.jobs.by_id(orphan.id).error) == ("failed", INTERRUPTED)
    assert trainer.jobs.by_id(alive.id).state == "running"


def test_a_version_file_an_interrupted_job_never_recorded_is_removed(trainer):
    first, folder = _recorded_version_1(trainer, b"kept!")
    # The second fit renamed v2.keras into place and was killed before the registry commit.
    second = _running_job(trainer, _dead_pid(), model_id=first.model_id)
    (folder / "v2.keras").write_bytes(b"never recorded")

    trainer.fail_orphaned_jobs()
    assert trainer.jobs.by_id(second.id).state == "failed"
    assert sorted(p.name for p in folder.iterdir()) == ["v1.keras"]
    assert (folder / "v1.keras").read_bytes() == b"kept!"
    assert [v.number for v in VersionRegistry(trainer.database).list(
        DEFAULT_TENANT, first.model_id)] == [1]
    model = ModelRegistry(trainer.database).get(DEFAULT_TENANT, first.model_id)
    assert (model.state, model.version) == ("trained", 1)


def test_a_job_that_recorded_its_outcome_keeps_its_files(trainer):
    job, folder = _recorded_version_1(trainer, b"recorded")
    trainer._fail(job.id, "the training process ended without recording the job's outcome")
    assert trainer.jobs.by_id(job.id).state == "succeeded"
    assert (folder / "v1.keras").exists()


def test_a_job_whose_runner_on_another_host_fell_silent_is_interrupted(trainer):
    # A container started afresh gets a new host name: its predecessor's jobs are on a host
    # no trainer will ever run on again, and only their silence tells.
    silent = _running_job(trainer, 7, host="gone-container", silent_for=timedelta(minutes=5))
    heard = _running_job(trainer, 7, host="other-host", claimed_ago=timedelta(hours=1))
    trainer.fail_orphaned_jobs()
    assert (trainer.jobs.by_id(silent.id).state,
            trainer.jobs.by_id(silent.id).error) == ("failed", INTERRUPTED)
    assert trainer.jobs.by_id(heard.id).state == "running"


def test_a_trainer_beats_for_the_jobs_it_runs(trainer):
    job = _running_job(trainer, os.getpid(), silent_for=timedelta(minutes=5))
    trainer.running[job.id] = None  # its child process, as far as this check goes
    trainer.fail_orphaned_jobs()
    beaten = trainer.jobs.by_id(job.id)
    assert beaten.state == "running"
    assert beaten.heartbeat_at > utcnow() - timedelta(minutes=1)
