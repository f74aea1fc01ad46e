"""Functions the sandbox tests run in a throw-away process (importable by name there)."""

from __future__ import annotations

import os
import time

from service.errors import InvalidSpec


def echo(value):
    return {"pid": os.getpid(), "value": value}


def refuse(message: str):
    raise InvalidSpec(message, errors=[{"path": "x", "message": message}])


def allocate(megabytes: int):
    blocks = [bytearray(1024 * 1024) for _ in range(megabytes)]
    return len(blocks)


def sleep(seconds: float, pid_file: str):
    with open(pid_file, "w") as handle:
        handle.write(str(os.getpid()))
    time.sleep(seconds)


def crash():
    os.abort()


def fail():
    raise RuntimeError("something inside Keras\nwith a second line")
