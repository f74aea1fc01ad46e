"""Queries on training jobs, and the transactions that move a job and its model together.

A job's state and its model's state change in one transaction, so that no crash can leave
a model `training` with no job, or a job `succeeded` without its version row.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update

from service.errors import PreconditionFailed, QueueFull, WrongState
from service.registry.database import Database
from service.registry.tables import Job, Model, Version, utcnow
from service.storage import new_id

ACTIVE_STATES = ("queued", "running", "cancelling")
RUNNING_STATES = ("running", "cancelling")
FINAL_STATES = ("succeeded", "failed", "cancelled")


class JobRegistry:
    def __init__(self, database: Database):
        self.db = database

    # -- the web side ------------------------------------------------------------------------

    def enqueue(self, model: Model, *, dataset_id: str, request: dict, max_queued: int,
                max_queued_per_model: int) -> Job:
        """Queue a fit of `model` and mark the model `training`, or refuse with a 429."""
        job = Job(id=new_id(), tenant_id=model.tenant_id, model_id=model.id,
                  dataset_id=dataset_id, state="queued", request=request, epoch=0,
                  epochs=request["epochs"], progress=0.0, history={}, cancel_requested=False)
        with self.db.transaction() as session:
            active = select(func.count()).select_from(Job).where(Job.state.in_(ACTIVE_STATES))
            if session.scalar(active) >= max_queued:
                raise QueueFull(f"{max_queued} jobs are already queued or running, the cap "
                                "(KERAS_SERVICE_MAX_QUEUED_JOBS); retry when one ends.",
                                headers={"Retry-After": "10"})
            if session.scalar(active.where(Job.model_id == model.id)) >= max_queued_per_model:
                raise QueueFull(f"Model '{model.id}' already has {max_queued_per_model} jobs "
                                "queued or running, the cap "
                                "(KERAS_SERVICE_MAX_QUEUED_JOBS_PER_MODEL).",
                                headers={"Retry-After": "10"})
            moved = session.execute(
                update(Model).where(Model.id == model.id, Model.revision == model.revision)
                .values(state="training", revision=Model.revision + 1, updated_at=utcnow()))
            if moved.rowcount != 1:
                raise PreconditionFailed(f"Model '{model.id}' changed while the fit was being "
                                         "queued; read it again and retry.")
            session.add(job)
        self.db.touch_stamp()
        return job

    def get(self, tenant_id: str, job_id: str) -> Job:
        return self.db.owned(Job, tenant_id, job_id, "job")

    def list(self, tenant_id: str, *, limit: int, offset: int, model: str | None = None,
             state: str | None = None) -> tuple[list[Job], int]:
        query = select(Job).where(Job.tenant_id == tenant_id)
        if model:
            query = query.where(Job.model_id == model)
        if state:
            query = query.where(Job.state == state)
        return self.db.page(query, Job.created_at.desc(), Job.id, limit=limit, offset=offset)

    def count_by_state(self) -> dict[str, int]:
        """How many jobs are in each state, all tenants (every state listed, 0 included)."""
        with self.db.session() as session:
            rows = session.execute(select(Job.state, func.count()).group_by(Job.state)).all()
        return {state: 0 for state in ACTIVE_STATES + FINAL_STATES} | dict(rows)

    def request_cancel(self, tenant_id: str, job_id: str) -> Job:
        """A queued job ends `cancelled` now; a running one becomes `cancelling`."""
        job = self.get(tenant_id, job_id)
        with self.db.transaction() as session:
            if session.execute(update(Job).where(Job.id == job.id, Job.state == "queued")
                               .values(state="cancelled", finished_at=utcnow(),
                                       cancel_requested=True)).rowcount:
                _settle_model(session, job.model_id)
            elif not session.execute(
                    update(Job).where(Job.id == job.id, Job.state == "running")
                    .values(state="cancelling", cancel_requested=True)).rowcount:
                state = session.get(Job, job.id).state
                if state != "cancelling":
                    raise WrongState(f"Job '{job.id}' has already ended ({state}); only a "
                                     "queued or running job can be cancelled.")
        self.db.touch_stamp()
        return self.by_id(job.id)

    # -- the trainer side --------------------------------------------------------------------

    def claim_next(self, runner: str) -> Job | None:
        """Take the oldest queued job whose model has no job running, or None."""
        with self.db.transaction() as session:
            busy_models = select(Job.model_id).where(Job.state.in_(("running", "cancelling")))
            candidates = session.scalars(
                select(Job.id).where(Job.state == "queued", Job.model_id.not_in(busy_models))
                .order_by(Job.created_at, Job.id).limit(5)).all()
            for job_id in candidates:
                now = utcnow()
                claimed = session.execute(
                    update(Job).where(Job.id == job_id, Job.state == "queued")
                    .values(state="running", runner=runner, started_at=now, heartbeat_at=now))
                if claimed.rowcount == 1:
                    return session.get(Job, job_id)
        return None

    def report_progress(self, job_id: str, *, epoch: int, progress: float,
                        history: dict | None = None) -> bool:
        """Record progress (and the heartbeat); return whether a cancel was asked for."""
        values = {"epoch": epoch, "progress": progress, "heartbeat_at": utcnow()}
        if history is not None:
            values["history"] = history
        with self.db.transaction() as session:
            session.execute(update(Job).where(Job.id == job_id,
                                              Job.state.in_(("running", "cancelling")))
                            .values(**values))
            return bool(session.scalar(select(Job.cancel_requested).where(Job.id == job_id)))

    def cancel_requested(self, job_ids: list[str]) -> set[str]:
        if not job_ids:
            return set()
        with self.db.session() as session:
            return set(session.scalars(select(Job.id).where(
                Job.id.in_(job_ids), Job.cancel_requested.is_(True))))

    def succeed(self, job_id: str, *, number: int, sha256: str, size: int, metrics: dict,
                history: dict) -> None:
        """Record version `number`, the job's success and the model's new state, together.

        The version's file must already be in place. Only one job of a model runs at a
        time (see claim_next), so `number` from next_version_number cannot be taken.
        """
        with self.db.transaction() as session:
            job = session.get(Job, job_id)
            session.add(Version(id=new_id(), tenant_id=job.tenant_id, model_id=job.model_id,
                                number=number, sha256=sha256, bytes=size, metrics=metrics,
                                job_id=job.id))
            now = utcnow()
            job.state, job.version, job.finished_at = "succeeded", number, now
            job.progress, job.history, job.epoch = 1.0, history, _epochs_run(history, job)
            model = session.get(Model, job.model_id)
            model.version, model.artifact = number, f"v{number}.keras"
            model.artifact_sha256 = sha256
            model.revision, model.updated_at = model.revision + 1, now
            session.flush()
            _settle_model(session, job.model_id)
        self.db.touch_stamp()

    def next_version_number(self, model_id: str) -> int:
        with self.db.session() as session:
            return _next_version(session, model_id)

    def end(self, job_id: str, state: str, error: str | None = None,
            history: dict | None = None) -> None:
        """End a job that did not succeed (`failed` or `cancelled`); restore its model."""
        with self.db.transaction() as session:
            job = session.get(Job, job_id)
            if job is None or job.state in FINAL_STATES:
                return
            job.state, job.error, job.finished_at = state, error, utcnow()
            if history is not None:
                job.history = history
            session.flush()
            _settle_model(session, job.model_id)
        self.db.touch_stamp()

    def running_on(self, runner_prefix: str) -> list[Job]:
        return self._running(Job.runner.startswith(runner_prefix))

    def silent_since(self, moment: datetime) -> list[Job]:
        """Running jobs, on any host, whose runner has not been heard from since `moment`."""
        return self._running(Job.heartbeat_at < moment)

    def beat(self, job_ids: list[str]) -> None:
        """Record that the runner of these jobs is alive (their fits report progress too)."""
        if not job_ids:
            return
        with self.db.transaction() as session:
            session.execute(update(Job).where(Job.id.in_(job_ids),
                                              Job.state.in_(RUNNING_STATES))
                            .values(heartbeat_at=utcnow()))

    def _running(self, condition) -> list[Job]:
        with self.db.session() as session:
            return list(session.scalars(select(Job).where(Job.state.in_(RUNNING_STATES),
                                                          condition)))

    def by_id(self, job_id: str) -> Job | None:
        """Any tenant's job: for trainers, which work for every tenant."""
        with self.db.session() as session:
            return session.get(Job, job_id)


def _next_version(session, model_id: str) -> int:
    latest = session.scalar(select(func.max(Version.number)).where(Version.model_id == model_id))
    return (latest or 0) + 1


def _epochs_run(history: dict, job: Job) -> int:
    return max((len(values) for values in history.values()), default=job.epoch)


def _settle_model(session, model_id: str) -> None:
    """Once a model has no active job, it is `trained` if it has a version, else `compiled`."""
    active = session.scalar(select(func.count()).select_from(Job).where(
        Job.model_id == model_id, Job.state.in_(ACTIVE_STATES)))
    model = session.get(Model, model_id)
    if model is None or active or model.state != "training":
        return
    model.state = "trained" if model.version else "compiled"
    model.revision, model.updated_at = model.revision + 1, utcnow()
