"""Run one function in a throw-away process: spawned, capped in memory and time, then killed.

An import parses a client's file with C libraries (zlib, HDF5) and TensorFlow. A file that
makes one of them allocate without end, spin, or crash takes down only this process, which
serves one import and is never reused. It is spawned, never forked (TensorFlow is not
fork-safe), sets its limits before it imports anything heavy, and answers in JSON, not
pickle, so that even a process a file has subverted cannot hand the web worker an object.

The limits bound resources, not privileges: the process runs as the service's user.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import logging
import math
import multiprocessing
import os
import resource
import signal
from dataclasses import dataclass

import orjson

from service.errors import InvalidModelFile, LimitExceeded, ServiceError

log = logging.getLogger(__name__)
# The answer: a model's description (spec, summary) fits in far less.
MAX_ANSWER_BYTES = 64 * 1024**2
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class SandboxLimits:
    """Data memory (RLIMIT_DATA), wall-clock seconds and largest file the process may write."""

    memory_bytes: int
    timeout: float
    file_bytes: int
    memory_setting: str = "KERAS_SERVICE_IMPORT_MEMORY_BYTES"
    timeout_setting: str = "KERAS_SERVICE_IMPORT_TIMEOUT"


def run_isolated(target: str, *args, limits: SandboxLimits):
    """Call `target` ("module:function") with `args` in a fresh process under `limits`.

    `args` and the return value must be JSON-serializable (the answer is sent as JSON).

    Raises:
        ServiceError: what `target` raised, re-raised here; LimitExceeded when the process
            ran out of time or memory, or ended without an answer.
    """
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(sender, target, args, limits),
                              name="keras-service-sandbox", daemon=True)
    process.start()
    sender.close()
    try:
        if not receiver.poll(limits.timeout):
            raise LimitExceeded(f"The import took longer than {limits.timeout:g} s "
                                f"({limits.timeout_setting}); its process was killed.")
        try:
            answer = orjson.loads(receiver.recv_bytes(MAX_ANSWER_BYTES))
        except (EOFError, OSError, orjson.JSONDecodeError):
            process.join(5)
            raise _ended(process.exitcode, limits) from None
    finally:
        receiver.close()
        if process.is_alive():
            process.kill()
        process.join()
    if "error" in answer:
        raise _error(answer["error"])
    return answer["result"]


def _ended(exitcode: int | None, limits: SandboxLimits) -> LimitExceeded:
    how = (f"was ended by {signal.Signals(-exitcode).name}"
           if exitcode is not None and exitcode < 0 else f"exited with code {exitcode}")
    return LimitExceeded(
        f"The import's process {how} before it answered: the file needed more than its "
        f"{limits.memory_bytes:,} bytes of memory ({limits.memory_setting}) or crashed the "
        "loader. Nothing was imported.")


def _error_classes(base: type = ServiceError) -> dict[str, type]:
    classes = {base.__name__: base}
    for subclass in base.__subclasses__():
        classes.update(_error_classes(subclass))
    return classes


def _error(answer: dict) -> ServiceError:
    """The child's error as its class, looked up by name among the service's own errors."""
    cls = _error_classes().get(answer.get("class"), InvalidModelFile)
    return cls(str(answer.get("detail")), errors=answer.get("errors"))


def _set_limit(which: int, value: int) -> None:
    _, hard = resource.getrlimit(which)
    value = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(which, (value, value))


def _limit(limits: SandboxLimits) -> None:
    _set_limit(resource.RLIMIT_DATA, limits.memory_bytes)
    _set_limit(resource.RLIMIT_FSIZE, limits.file_bytes)
    _set_limit(resource.RLIMIT_CORE, 0)
    # A backstop for a process whose parent died without killing it: CPU time across all
    # of TensorFlow's threads.
    _set_limit(resource.RLIMIT_CPU, math.ceil(limits.timeout * (os.cpu_count() or 1)) + 10)
    with contextlib.suppress(OSError, AttributeError):
        # Die with the web worker thread that waits for this process (Linux).
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    # CPU only: TensorFlow must not map GPU memory, which the data limit would not allow.
    os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _child(sender, target: str, args: tuple, limits: SandboxLimits) -> None:
    _limit(limits)
    try:
        module, name = target.split(":")
        answer = {"result": getattr(importlib.import_module(module), name)(*args)}
    except ServiceError as error:
        answer = {"error": {"class": type(error).__name__, "detail": error.detail,
                            "errors": error.errors}}
    except MemoryError:
        answer = {"error": {"class": "LimitExceeded", "detail": (
            f"The import needed more than its {limits.memory_bytes:,} bytes of memory "
            f"({limits.memory_setting}). Nothing was imported.")}}
    except Exception as error:  # noqa: BLE001 - whatever the file caused, it is refused
        log.warning("import failed", exc_info=True)
        answer = {"error": {"class": "InvalidModelFile", "detail": (
            f"The file could not be imported: {type(error).__name__}: "
            f"{' '.join(str(error).split())[:500]}")}}
    sender.send_bytes(orjson.dumps(answer))
    sender.close()
