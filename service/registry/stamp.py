"""The registry stamp: a file whose mtime says "models, versions or labels changed".

Web workers cache model and version rows for serving; reading the stamp's mtime (one
`os.stat`, about a microsecond) tells them whether to read the registry again, so a new
version or a deleted model is seen by every worker on the host without a query per request.
Every write that changes what is served calls `touch()` after its commit.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

STAMP_NAME = ".registry-stamp"


class RegistryStamp:
    def __init__(self, path: Path | None):
        self.path = path

    def read(self) -> int:
        """The stamp's mtime in ns; 0 when there is no stamp (yet)."""
        if self.path is None:
            return 0
        try:
            return os.stat(self.path).st_mtime_ns
        except OSError:
            return 0

    def touch(self) -> None:
        if self.path is None:
            return
        # Set explicitly, one ns past the last at least: the kernel's own file times are
        # only as fine as a clock tick, and two writes in one tick must still differ.
        stamp = max(time.time_ns(), self.read() + 1)
        try:
            self.path.touch()
            os.utime(self.path, ns=(stamp, stamp))
        except OSError:  # a read-only data dir: workers fall back on the refresh interval
            pass


def stamp_for(url: str, data_dir: Path | None) -> RegistryStamp:
    """The stamp of the registry at `url`: in `data_dir`, else beside an SQLite file."""
    if data_dir is not None:
        return RegistryStamp(Path(data_dir) / STAMP_NAME)
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        return RegistryStamp(Path(url[len("sqlite:///"):]).parent / STAMP_NAME)
    return RegistryStamp(None)


class StampedRefresh:
    """Calls `reload` when the stamp has moved or `refresh_s` has passed since the last call.

    For per-worker caches of registry rows: `check()` costs one `os.stat` when nothing
    changed; the interval covers writers on other hosts, which do not touch this stamp.
    """

    def __init__(self, stamp: RegistryStamp, refresh_s: float, reload: Callable[[], None]):
        self.stamp = stamp
        self.refresh_s = refresh_s
        self.reload = reload
        self._lock = threading.Lock()
        self._seen = -1
        self._expires = 0.0

    def check(self) -> None:
        stamp = self.stamp.read()
        if stamp == self._seen and time.monotonic() < self._expires:
            return
        with self._lock:
            if stamp == self._seen and time.monotonic() < self._expires:
                return  # another thread reloaded meanwhile
            self.reload()
            self._seen = stamp
            self._expires = time.monotonic() + self.refresh_s
