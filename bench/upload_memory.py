"""Memory of the whole service while it receives one large `.npy` upload.

Starts a real `keras-service serve`, writes a float32 `.npy` of SIZE_MB (500 by default)
block by block, and uploads it as multipart/form-data with requests, streaming the body
from disk (a file-like body with a known length: requests never holds it whole). A thread
samples the service's total RSS (gunicorn, its workers and their builders) every 20 ms;
the result is the peak growth over the idle baseline, against the upload's size.

    .venv/bin/python bench/upload_memory.py [--size-mb 500] [--workers 2]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
from numpy.lib import format as npy_format

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.machine import describe_machine  # noqa: E402
from tests.server import ServiceProcess  # noqa: E402

BOUNDARY = "bench-upload-boundary"
COLUMNS = 1024


def service_rss(master_pid: int) -> int:
    master = psutil.Process(master_pid)
    total = 0
    for process in [master, *master.children(recursive=True)]:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def settled_rss(master_pid: int, timeout: float = 180) -> int:
    """The service's RSS once it stops growing: builders import TensorFlow after start-up."""
    previous, deadline = service_rss(master_pid), time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(2)
        current = service_rss(master_pid)
        if abs(current - previous) < 4 * 2**20:
            return current
        previous = current
    return previous


def web_worker_rss(master_pid: int) -> int:
    """RSS of gunicorn's processes alone (not the builders or the trainer)."""
    return sum(p.memory_info().rss for p in psutil.Process(master_pid).children(recursive=True)
               if p.cmdline()[-2:] == ["service", "web"])


def write_npy(path: Path, size_mb: int) -> None:
    rows = size_mb * 2**20 // (4 * COLUMNS)
    with open(path, "wb") as handle:
        npy_format.write_array_header_1_0(handle, {"descr": "<f4", "fortran_order": False,
                                                   "shape": (rows, COLUMNS)})
        block = np.random.default_rng(0).normal(size=(256, COLUMNS)).astype(np.float32)
        for start in range(0, rows, 256):
            handle.write(block[: min(256, rows - start)].tobytes())


class MultipartFile(io.RawIOBase):
    """A multipart body of one file field, read from disk; its length is known up front."""

    def __init__(self, path: Path, field: str):
        self.head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{field}\"; "
                     f"filename=\"{path.name}\"\r\nContent-Type: application/octet-stream"
                     "\r\n\r\n").encode()
        self.tail = f"\r\n--{BOUNDARY}--\r\n".encode()
        self.length = len(self.head) + path.stat().st_size + len(self.tail)
        self.parts = [io.BytesIO(self.head), open(path, "rb"), io.BytesIO(self.tail)]

    def __len__(self) -> int:
        return self.length

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        size = 1 << 20 if size is None or size < 0 else size
        while self.parts:
            data = self.parts[0].read(size)
            if data:
                return data
            self.parts.pop(0).close()
        return b""


class Sampler(threading.Thread):
    def __init__(self, pid: int, period: float = 0.02):
        super().__init__(daemon=True)
        self.pid, self.period = pid, period
        self.peak = self.peak_web = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            self.peak = max(self.peak, service_rss(self.pid))
            self.peak_web = max(self.peak_web, web_worker_rss(self.pid))
            time.sleep(self.period)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        npy_path = Path(folder) / "x.npy"
        write_npy(npy_path, args.size_mb)
        upload_bytes = npy_path.stat().st_size
        service = ServiceProcess(Path(folder) / "data", workers=args.workers, env={
            "KERAS_SERVICE_MAX_DATASET_BYTES": str(2 * upload_bytes)}).start()
        try:
            baseline = settled_rss(service.process.pid)
            baseline_web = web_worker_rss(service.process.pid)
            sampler = Sampler(service.process.pid)
            sampler.start()
            started = time.perf_counter()
            body = MultipartFile(npy_path, "x")
            # requests sends Content-Length from len(body) and the body in 8 KiB reads.
            response = service.post("/datasets", data=body, headers={
                "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
            elapsed = time.perf_counter() - started
            time.sleep(0.5)
            sampler.stopping.set()
            sampler.join()
            assert response.status_code == 201, response.text
            dataset = response.json()
        finally:
            service.stop()

    growth = sampler.peak - baseline
    result = {
        "upload_mb": round(upload_bytes / 2**20, 1),
        "arrays": dataset["arrays"],
        "baseline_rss_mb": round(baseline / 2**20, 1),
        "peak_rss_mb": round(sampler.peak / 2**20, 1),
        "peak_growth_mb": round(growth / 2**20, 1),
        "peak_growth_vs_upload": round(growth / upload_bytes, 4),
        "web_workers_peak_growth_mb": round((sampler.peak_web - baseline_web) / 2**20, 1),
        "seconds": round(elapsed, 2),
        "mb_per_second": round(upload_bytes / 2**20 / elapsed, 1),
        "workers": args.workers,
        "machine": describe_machine(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
