"""How the web side hands jobs to trainers: one small interface.

The registry is the source of truth: a job is queued by its row, whatever the transport.
The embedded `LocalJobQueue` needs no transport at all, because the local trainer polls the
registry. A Celery-on-Redis queue would implement `submit` as `send_task("fit", job_id)`
and `cancel` as a broadcast, and run `service.jobs.execution.run_job` in its workers;
nothing in the API changes.
"""

from __future__ import annotations

from typing import Protocol


class JobQueue(Protocol):
    def submit(self, job_id: str) -> None:
        """Tell trainers that `job_id` is queued in the registry."""

    def cancel(self, job_id: str) -> None:
        """Tell trainers that `job_id` should stop (its row already says so)."""


class LocalJobQueue:
    """The embedded default: the local trainer polls the registry, so there is nothing to send."""

    def submit(self, job_id: str) -> None:
        return None

    def cancel(self, job_id: str) -> None:
        return None
