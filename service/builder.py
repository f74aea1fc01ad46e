"""Run Keras work (spec checks, builds, compiles) in a recycled helper process.

TensorFlow keeps some state for every model built in a process and never gives it back,
so a web worker that built models itself would grow with every layer added. Instead each
web worker hands that work to one child process and replaces the child after
`recycle_after` tasks. The replacement is started and warmed up (TensorFlow imported)
while the old child still answers, so requests never wait for an import.

The child is started with "spawn", never "fork": TensorFlow is not fork-safe.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from service.errors import Busy

log = logging.getLogger(__name__)
PARENT_CHECK_S = 0.5


def _init_child(parent_pid: int) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    threading.Thread(target=_exit_when_orphaned, args=(parent_pid,), daemon=True,
                     name="builder-parent-watch").start()


def _exit_when_orphaned(parent_pid: int) -> None:
    """End this builder once its web worker is gone.

    A worker killed with SIGKILL (the OOM killer, gunicorn's timeout) cannot stop its
    builder, which would linger with TensorFlow's memory. Linux's parent-death signal is
    tied to the thread that started the child (whichever request thread needed a builder),
    not to the worker, so the builder watches for itself.
    """
    while os.getppid() == parent_pid:
        time.sleep(PARENT_CHECK_S)
    os._exit(0)


def _warm_up() -> int:
    import service.keras_ops as keras_ops

    keras_ops.catalog_document()
    return os.getpid()


def _run(function_name: str, args: tuple, kwargs: dict):
    import service.keras_ops as keras_ops

    return getattr(keras_ops, function_name)(*args, **kwargs)


@dataclass
class _Child:
    executor: ProcessPoolExecutor
    ready: Future

    def kill(self) -> None:
        # The pool has no public way to stop a task that hangs; its processes are known.
        for process in list(getattr(self.executor, "_processes", {}).values()):
            process.kill()
        self.executor.shutdown(wait=False, cancel_futures=True)


class BuilderPool:
    """A single recycled child process that runs `service.keras_ops` functions."""

    def __init__(self, recycle_after: int = 200, timeout: float = 120.0):
        self.recycle_after = max(1, recycle_after)
        self.timeout = timeout
        self._lock = threading.Lock()
        self._current: _Child | None = None
        self._spare: _Child | None = None
        self._used = 0

    def start(self) -> None:
        """Start the child now, so the first request does not wait for TensorFlow."""
        with self._lock:
            if self._current is None:
                self._current = self._spawn()

    def call(self, function_name: str, *args, **kwargs):
        """Run `service.keras_ops.<function_name>(*args, **kwargs)` in the child."""
        child = self._child_for_task()
        future = child.executor.submit(_run, function_name, args, kwargs)
        try:
            return future.result(timeout=self.timeout)
        except FutureTimeout:
            self._discard(child)
            raise Busy(f"Building the model took longer than {self.timeout:g} s "
                       "(KERAS_SERVICE_BUILDER_TIMEOUT); the builder was restarted.",
                       headers={"Retry-After": "5"}) from None
        except BrokenProcessPool:
            self._discard(child)
            log.error("builder process ended during %s", function_name)
            raise Busy("The builder process ended while building this model; "
                       "it has been restarted. Retry the request.",
                       headers={"Retry-After": "5"}) from None

    def close(self) -> None:
        with self._lock:
            for child in (self._current, self._spare):
                if child is not None:
                    child.executor.shutdown(wait=False, cancel_futures=True)
            self._current = self._spare = None

    @property
    def child_pids(self) -> list[int]:
        with self._lock:
            children = [c for c in (self._current, self._spare) if c is not None]
        return [pid for c in children for pid in getattr(c.executor, "_processes", {})]

    def _spawn(self) -> _Child:
        executor = ProcessPoolExecutor(
            max_workers=1, mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_child, initargs=(os.getpid(),))
        return _Child(executor, executor.submit(_warm_up))

    def _child_for_task(self) -> _Child:
        with self._lock:
            if self._current is None:
                self._current = self._spawn()
            if self._used >= self.recycle_after and self._spare is None:
                self._spare = self._spawn()
            if self._spare is not None and self._spare.ready.done():
                retired, self._current, self._spare = self._current, self._spare, None
                self._used = 0
                # Tasks already queued on the retired child still finish.
                retired.executor.shutdown(wait=False)
            self._used += 1
            return self._current

    def _discard(self, child: _Child) -> None:
        with self._lock:
            if self._current is child:
                self._current, self._used = None, 0
            if self._spare is child:
                self._spare = None
        child.kill()
