"""Server-Sent Events for one job: an event per epoch, progress between, the outcome last.

    event: progress            data: {"state", "epoch", "epochs", "progress"}
    id: 3 / event: epoch       data: {"epoch": 3, "epochs", "progress", "metrics": {...}}
    event: end                 data: {"state", "error", "version", "history"}

Epoch events carry the epoch number as their id, so a client that reconnects with
`Last-Event-ID: 3` gets epochs 4 onwards, then the rest of the stream.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import orjson

from service.registry.jobs import FINAL_STATES
from service.registry.tables import Job

POLL_S = 0.25
KEEPALIVE_S = 15.0


def format_event(event: str, data: dict, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {orjson.dumps(data).decode()}\n\n"


def resume_point(last_event_id: str | None) -> int:
    """Epochs the client already has, from its Last-Event-ID (0 when absent or odd)."""
    try:
        return max(0, int(last_event_id or 0))
    except ValueError:
        return 0


def job_events(read_job: Callable[[], Job], last_event_id: str | None = None,
               poll_s: float = POLL_S) -> Iterator[str]:
    sent_epochs = resume_point(last_event_id)
    last_progress, last_sent = None, time.monotonic()
    while True:
        job = read_job()
        epochs_done = max((len(values) for values in job.history.values()), default=0)
        for epoch in range(sent_epochs, epochs_done):
            metrics = {key: values[epoch] for key, values in job.history.items()
                       if epoch < len(values)}
            yield format_event("epoch", {"epoch": epoch + 1, "epochs": job.epochs,
                                         "progress": (epoch + 1) / job.epochs,
                                         "metrics": metrics}, event_id=epoch + 1)
            last_sent = time.monotonic()
        sent_epochs = max(sent_epochs, epochs_done)
        if job.state in FINAL_STATES:
            yield format_event("end", {"state": job.state, "error": job.error,
                                       "version": job.version, "history": job.history})
            return
        progress = (job.state, job.epoch, round(job.progress, 4))
        if progress != last_progress:
            last_progress = progress
            yield format_event("progress", {"state": job.state, "epoch": job.epoch,
                                            "epochs": job.epochs, "progress": job.progress})
            last_sent = time.monotonic()
        elif time.monotonic() - last_sent > KEEPALIVE_S:
            yield ": keep-alive\n\n"
            last_sent = time.monotonic()
        time.sleep(poll_s)
