"""Dynamic batching: concurrent requests for one version run as one call of the model.

Opt-in per model (`batching` on the model: max_batch_size, max_latency_ms, max_queue). In a
worker, each version served with batching has one `Batcher`: request threads queue their
checked arrays and wait; the batcher's thread, woken by the first request, waits at most
max_latency_ms for more rows (or until max_batch_size), runs them together and hands each
request its own rows. One call for sixteen rows costs about what a call for one row does,
so throughput under concurrency grows with the batch. The queue is bounded: when full, a
request is refused at once with a 503 and Retry-After rather than waiting without end.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from service.errors import Busy

# A batcher thread with nothing to do for this long ends; the next request starts another.
# So a version evicted from the cache leaves no thread behind.
IDLE_EXIT_S = 30.0
RETRY_AFTER_S = 1


@dataclass(frozen=True)
class BatchPolicy:
    max_batch_size: int
    max_latency_ms: float
    max_queue: int

    @classmethod
    def of(cls, batching: dict | None) -> BatchPolicy | None:
        """The policy of a model's `batching` column (None: batching is off)."""
        if not batching:
            return None
        return cls(int(batching["max_batch_size"]), float(batching["max_latency_ms"]),
                   int(batching["max_queue"]))


@dataclass
class _Request:
    arrays: list[np.ndarray]
    done: threading.Event = field(default_factory=threading.Event)
    outputs: list[np.ndarray] | None = None
    error: BaseException | None = None

    @property
    def rows(self) -> int:
        return self.arrays[0].shape[0]

    @property
    def shapes(self) -> tuple:
        # Only requests whose rows have the same shape can be stacked into one batch.
        return tuple((array.shape[1:], array.dtype) for array in self.arrays)


class Batcher:
    """Queue and batch the requests of one loaded version.

    Args:
        run: input arrays (a batch per input) -> output arrays, the model's forward pass.
        policy: sizes and waits (see BatchPolicy).
        label: "model 'x' version N", for messages.
    """

    def __init__(self, run: Callable[[list[np.ndarray]], list[np.ndarray]],
                 policy: BatchPolicy, label: str):
        self.run = run
        self.policy = policy
        self.label = label
        self._queue: deque[_Request] = deque()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def submit(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Queue `arrays` (one request's rows) and wait for their outputs.

        Raises:
            Busy: max_queue requests are already waiting (503, Retry-After).
        """
        request = _Request(arrays)
        with self._wake:
            if len(self._queue) >= self.policy.max_queue:
                raise Busy(f"The batching queue of {self.label} is full: "
                           f"{len(self._queue)} requests wait, its max_queue. Retry in "
                           f"{RETRY_AFTER_S} s, or raise batching.max_queue.",
                           headers={"Retry-After": str(RETRY_AFTER_S)})
            self._queue.append(request)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, daemon=True,
                                                name=f"batcher {self.label}")
                self._thread.start()
            self._wake.notify()
        request.done.wait()
        if request.error is not None:
            raise request.error
        return request.outputs

    def queued(self) -> int:
        with self._wake:
            return len(self._queue)

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._run(batch)

    def _next_batch(self) -> list[_Request] | None:
        """Wait for a first request, then for more until the batch is full or time is up."""
        policy = self.policy
        with self._wake:
            idle_until = time.monotonic() + IDLE_EXIT_S
            while not self._queue:
                left = idle_until - time.monotonic()
                if left <= 0:
                    self._thread = None  # under the lock: submit() starts a new one
                    return None
                self._wake.wait(left)
            deadline = time.monotonic() + policy.max_latency_ms / 1000
            while sum(r.rows for r in self._queue) < policy.max_batch_size:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._wake.wait(left)
            return self._take()

    def _take(self) -> list[_Request]:
        # The first request always goes; those after it join while they fit and match it.
        first = self._queue.popleft()
        batch, rows, kept = [first], first.rows, deque()
        while self._queue:
            request = self._queue.popleft()
            if (rows + request.rows <= self.policy.max_batch_size
                    and request.shapes == first.shapes):
                batch.append(request)
                rows += request.rows
            else:
                kept.append(request)
        self._queue.extendleft(reversed(kept))
        return batch

    def _run(self, batch: list[_Request]) -> None:
        try:
            if len(batch) == 1:
                batch[0].outputs = self.run(batch[0].arrays)
            else:
                inputs = [np.concatenate(parts) for parts in
                          zip(*(request.arrays for request in batch), strict=True)]
                outputs = self.run(inputs)
                start = 0
                for request in batch:
                    end = start + request.rows
                    request.outputs = [output[start:end] for output in outputs]
                    start = end
        except BaseException as error:  # every waiting request gets the error, none hangs
            for request in batch:
                request.error = error
        finally:
            for request in batch:
                request.done.set()
