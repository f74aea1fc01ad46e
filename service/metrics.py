"""Prometheus metrics: what is counted, and one exposition for every gunicorn worker.

The metrics below live at module level, as prometheus-client expects. Under gunicorn each
worker is a process of its own, so `keras-service web` points PROMETHEUS_MULTIPROC_DIR at a
fresh folder before this module is first imported (prometheus-client picks its storage at
import): every worker then writes its values to files there, and `exposition()` adds them up,
whichever worker answers the scrape. Without that variable (tests, one process) the values
stay in memory and the default registry is exposed.

Every label value is bounded: route templates (never raw paths), methods, status codes,
model ids and job states; never anything a client typed.
"""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Callable

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The classic text format: what every Prometheus version and most scrapers read.
# (a constant of its own only in recent prometheus-client releases).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# From a fast one-row predict (~1 ms) to a slow build or upload.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
                   5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384, 65536)
LOAD_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

# `_created` series carry start times that multiprocess mode never exposes; one shape for both.
disable_created_metrics()

# Every metric has labels: an unlabelled one would create its file in any process that
# imports this module (builders, trainers), not only in the web workers that count.
HTTP_REQUESTS = Counter("keras_service_http_requests", "HTTP requests answered.",
                        ["method", "route", "status"])
HTTP_LATENCY = Histogram("keras_service_http_request_duration_seconds",
                         "Time to answer an HTTP request, up to the response's first byte.",
                         ["method", "route"], buckets=LATENCY_BUCKETS)
PREDICTIONS = Counter("keras_service_predictions",
                      "Prediction requests that passed the input checks, all protocols.",
                      ["model"])
PREDICTION_ROWS = Counter("keras_service_prediction_rows", "Rows predicted.", ["model"])
BATCH_SIZE = Histogram("keras_service_prediction_batch_size",
                       "Rows per call of a model's forward pass.", ["model"],
                       buckets=BATCH_BUCKETS)
CACHE_HITS = Counter("keras_service_model_cache_hits",
                     "Model lookups answered from a worker's cache of loaded versions.",
                     ["model"])
CACHE_MISSES = Counter("keras_service_model_cache_misses",
                       "Model lookups that had to load a version (failed loads too).",
                       ["model"])
LOAD_SECONDS = Histogram("keras_service_model_load_seconds",
                         "Time to load, check and warm up a version.", ["model"],
                         buckets=LOAD_BUCKETS)
LITE_OUTCOMES = Counter("keras_service_lite_outcomes",
                        "Versions a worker tried to move onto LiteRT, and LiteRT calls that "
                        "failed, by outcome (inference/lite.py).", ["model", "outcome"])


# (method, route, status) -> the two metric children: .labels() costs a lock and a few
# microseconds; this dict lookup does not. Bounded like the labels themselves.
_http_children: dict[tuple, tuple] = {}


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    key = (method, route, status)
    children = _http_children.get(key)
    if children is None:
        children = _http_children[key] = (HTTP_REQUESTS.labels(method, route, str(status)),
                                          HTTP_LATENCY.labels(method, route))
    children[0].inc()
    children[1].observe(seconds)


_model_children: dict[str, tuple] = {}


def _children_of(model_id: str) -> tuple:
    children = _model_children.get(model_id)
    if children is None:
        if len(_model_children) > 10_000:  # deleted models' entries: drop them all now and then
            _model_children.clear()
        children = _model_children[model_id] = (PREDICTIONS.labels(model_id),
                                                PREDICTION_ROWS.labels(model_id),
                                                BATCH_SIZE.labels(model_id),
                                                CACHE_HITS.labels(model_id))
    return children


def record_prediction(model_id: str, rows: int) -> None:
    """One predict request of `rows` rows, whether it runs alone or in a dynamic batch."""
    children = _children_of(model_id)
    children[0].inc()
    children[1].inc(rows)


def observe_batch(model_id: str, rows: int) -> None:
    """One call of the model's forward pass on `rows` rows (a request's, or a batch's)."""
    _children_of(model_id)[2].observe(rows)


def cache_hit(model_id: str) -> None:
    _children_of(model_id)[3].inc()


def lite_outcome(model_id: str, outcome: str) -> None:
    """How a version's move onto LiteRT ended in this worker (lite.OUTCOMES)."""
    LITE_OUTCOMES.labels(model_id, outcome).inc()


def timed_load(model_id: str, load: Callable):
    """Run a cache miss's `load`: count the miss and, when it succeeds, its time."""
    CACHE_MISSES.labels(model_id).inc()
    started = time.perf_counter()
    entry = load()
    LOAD_SECONDS.labels(model_id).observe(time.perf_counter() - started)
    return entry


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def exposition(job_counts: dict[str, int]) -> bytes:
    """The text exposition of every worker's metrics, plus jobs by state read just now."""
    registry = CollectorRegistry()
    if multiprocess_dir():
        SizedFilesCollector(registry)
    else:
        # A registry is a collector too: this one holds the in-memory values above.
        registry.register(REGISTRY)
    registry.register(JobStates(job_counts))
    return generate_latest(registry)


def sized_metric_files(folder: str) -> list[str]:
    """The workers' value files, less those still empty.

    A worker creates its file and only then sizes it, so a scrape can meet a file of 0 bytes,
    and keeps meeting it if the worker died in between. prometheus-client fails the whole
    scrape on such a file (prometheus/client_python#1199); until it has a header it holds no
    values, so it is skipped. A file only ever grows, so one found non-empty stays readable.
    """
    sized = []
    for path in glob.glob(os.path.join(folder, "*.db")):
        try:
            if os.path.getsize(path) > 0:
                sized.append(path)
        except FileNotFoundError:  # a dead worker's gauges, just removed
            pass
    return sized


class SizedFilesCollector(MultiProcessCollector):
    """prometheus-client's collector of every worker's files, reading only sized ones."""

    def collect(self):
        return self.merge(sized_metric_files(self._path), accumulate=True)


class JobStates:
    """Jobs by state as a gauge. The registry is the truth, so it is read at scrape time
    rather than kept in every worker's memory."""

    def __init__(self, counts: dict[str, int]):
        self.counts = counts

    def collect(self):
        gauge = GaugeMetricFamily("keras_service_jobs", "Training jobs by state, all tenants.",
                                  labels=["state"])
        for state, count in self.counts.items():
            gauge.add_metric([state], count)
        yield gauge


def worker_exited(server, worker) -> None:
    """gunicorn's child_exit hook: drop the files of a dead worker's live gauges."""
    if multiprocess_dir():
        mark_process_dead(worker.pid)
