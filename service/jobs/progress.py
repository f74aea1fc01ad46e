"""A Keras callback that reports a fit's progress to the registry and stops it on a cancel."""

from __future__ import annotations

import time

import keras

from service.registry import JobRegistry
from service.registry.tables import Job

REPORT_INTERVAL_S = 0.5


class ProgressReporter(keras.callbacks.Callback):
    """Progress within an epoch at most every REPORT_INTERVAL_S, and every epoch's metrics.

    Each report also reads the job's cancel flag: a cancel stops the fit at the next batch
    boundary, at most one interval later.
    """

    def __init__(self, jobs: JobRegistry, job: Job):
        super().__init__()
        self.jobs, self.job_id, self.epochs = jobs, job.id, job.epochs
        self.history: dict[str, list[float]] = {}
        self.cancelled = False
        self.epoch = 0
        self._last_report = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        now = time.monotonic()
        if now - self._last_report < REPORT_INTERVAL_S:
            return
        self._last_report = now
        steps = max(1, (self.params or {}).get("steps") or 1)
        self._report(progress=(self.epoch + min(1.0, (batch + 1) / steps)) / self.epochs,
                     epoch=self.epoch)

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        self._report(progress=(epoch + 1) / self.epochs, epoch=epoch + 1, history=self.history)

    def final_metrics(self) -> dict:
        return {key: values[-1] for key, values in self.history.items() if values}

    def _report(self, *, progress: float, epoch: int, history=None) -> None:
        # 1.0 is the job's success, recorded with its version, not a fit that just ended.
        cancel = self.jobs.report_progress(self.job_id, epoch=epoch,
                                           progress=min(progress, 0.999), history=history)
        if cancel and not self.cancelled:
            self.cancelled = True
            self.model.stop_training = True
