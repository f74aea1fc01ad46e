"""A real `keras-service serve` (gunicorn, its workers, their builders) for end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServiceProcess:
    def __init__(self, data_dir: Path, workers: int = 2, env: dict | None = None):
        self.data_dir = Path(data_dir)
        self.workers = workers
        self.env = env or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-{self.port}.log"

    def start(self, timeout: float = 90) -> ServiceProcess:
        environment = {k: v for k, v in os.environ.items()
                       if not k.startswith("KERAS_SERVICE_")}
        environment.update(self.env)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1",
             "--port", str(self.port), "--data-dir", str(self.data_dir),
             "--workers", str(self.workers)],
            env=environment, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        try:
            self._wait_until_ready(timeout)
        except BaseException:
            self.kill_hard()  # never leave a half-started service behind
            raise
        return self

    def _wait_until_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"service exited: {self.log_path.read_text()[-3000:]}")
            try:
                if requests.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass  # not listening yet, or a worker still booting
            time.sleep(0.2)
        raise RuntimeError(f"service not ready in {timeout} s: "
                           f"{self.log_path.read_text()[-3000:]}")

    def kill_hard(self) -> None:
        """kill -9 the whole service: master, workers and builder processes."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill_hard()

    def get(self, path, **kwargs):
        return requests.get(self.url + path, timeout=60, **kwargs)

    def post(self, path, **kwargs):
        return requests.post(self.url + path, timeout=120, **kwargs)

    def delete(self, path, **kwargs):
        return requests.delete(self.url + path, timeout=60, **kwargs)
