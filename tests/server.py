"""A real `keras-service serve` (gunicorn, its workers, their builders) for end-to-end tests."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import requests

from tests.conftest import LESSON_LAYERS

RNG = np.random.default_rng(7)


def alive(process: psutil.Process) -> bool:
    """Running: a killed process whose parent died may linger as a zombie until init reaps it."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


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

    def role(self, name: str) -> psutil.Process:
        """The supervisor's child that runs `name`: "web" (gunicorn's master) or "trainer"."""
        supervisor = psutil.Process(self.process.pid)
        return next(c for c in supervisor.children() if name in c.cmdline()[1:])

    def tree(self) -> list[psutil.Process]:
        """The supervisor and every process under it."""
        supervisor = psutil.Process(self.process.pid)
        return [supervisor, *supervisor.children(recursive=True)]

    def kill_hard(self) -> None:
        """kill -9 the whole service: supervisor, gunicorn, workers, builders, trainer and
        job processes. Returns once none of them runs, so a restart never overlaps them."""
        tree = []
        with contextlib.suppress(psutil.NoSuchProcess):
            tree = self.tree()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        for process in tree:  # one that left the process group goes too
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        self.process.wait(timeout=30)
        deadline = time.monotonic() + 30
        while any(alive(process) for process in tree):
            assert time.monotonic() < deadline, [p.pid for p in tree if alive(p)]
            time.sleep(0.05)

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


def wait_for_job(service: ServiceProcess, job_id: str, states, timeout: float = 180) -> dict:
    """Poll the job until it is in one of `states`; return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = service.get(f"/jobs/{job_id}").json()
        if job["state"] in states:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not reach {states}: {job}")


def compiled_lesson_model(service: ServiceProcess, name: str) -> dict:
    """The lesson's MLP (100 inputs, 10 classes), compiled with SGD."""
    model = service.post("/models", json={"name": name, "layers": LESSON_LAYERS}).json()
    response = service.post(f"/models/{model['id']}/compile",
                            json={"loss": "categorical_crossentropy", "optimizer": "sgd"})
    assert response.status_code == 200, response.text
    return response.json()


def lesson_npy_files(rows: int, rng=RNG) -> dict[str, tuple[str, bytes]]:
    """Random data for the lesson's MLP as .npy files, {field: (file name, bytes)}."""
    x = rng.random((rows, 100), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, rows)]
    files = {}
    for array_name, array in (("x", x), ("y", y)):
        buffer = io.BytesIO()
        np.save(buffer, array)
        files[array_name] = (f"{array_name}.npy", buffer.getvalue())
    return files


def upload_npy(service: ServiceProcess, rows: int, name: str) -> dict:
    response = service.post("/datasets", files=lesson_npy_files(rows), data={"name": name})
    assert response.status_code == 201, response.text
    return response.json()
