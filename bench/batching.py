"""Throughput of 16 concurrent one-row clients, with and without dynamic batching.

Starts `keras-service serve --workers 1 --threads 16` (so that all 16 requests can be in
the worker at once), trains the lesson's MLP and a small CNN on 28x28x1 images through the
API, then for each model runs 16 client threads (one keep-alive http.client connection
each, one row per request) for a fixed time, first with batching off, then with
`{"max_batch_size": 16, "max_latency_ms": 2}`. Each model is warmed first with 300 one-row
predictions, so that its small batches run on LiteRT, as on a deployed endpoint.

    .venv/bin/python bench/batching.py [--seconds 10] [--no-lite]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.machine import describe_machine  # noqa: E402
from bench.predict_speed import (  # noqa: E402
    LESSON_LAYERS,
    Connection,
    trained_model,
    warm_up_lite,
)
from tests.server import ServiceProcess  # noqa: E402

CLIENTS = 16
CNN_LAYERS = [
    {"type": "Conv2D", "filters": 16, "kernel_size": 3, "activation": "relu",
     "input_shape": [28, 28, 1]},
    {"type": "MaxPooling2D", "pool_size": 2},
    {"type": "Conv2D", "filters": 32, "kernel_size": 3, "activation": "relu"},
    {"type": "MaxPooling2D", "pool_size": 2},
    {"type": "Flatten"},
    {"type": "Dense", "units": 10, "activation": "softmax"},
]
BATCHING = {"max_batch_size": 16, "max_latency_ms": 2, "max_queue": 256}
RNG = np.random.default_rng(0)
NPY = "application/x-npy"


def throughput(url: str, body: bytes, seconds: float) -> tuple[float, float]:
    """(requests per second, p50 latency in ms) of CLIENTS threads posting `body`."""
    stop, counts, latencies = threading.Event(), [0] * CLIENTS, [[] for _ in range(CLIENTS)]

    def client(index: int) -> None:
        connection = Connection(url)
        while not stop.is_set():
            started = time.perf_counter()
            connection.post(body, NPY, "application/json")
            latencies[index].append(time.perf_counter() - started)
            counts[index] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    time.sleep(1)  # warm-up: connections open, batcher running
    done_before, started = sum(counts), time.perf_counter()
    time.sleep(seconds)
    rate = (sum(counts) - done_before) / (time.perf_counter() - started)
    stop.set()
    for thread in threads:
        thread.join()
    return rate, float(np.median([x for each in latencies for x in each])) * 1000


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--no-lite", action="store_true",
                        help="serve every call on TensorFlow (KERAS_SERVICE_LITE_RUNTIME=false)")
    args = parser.parse_args()
    service = ServiceProcess(Path(tempfile.mkdtemp(prefix="batching-")) / "data", workers=1,
                             env={"KERAS_SERVICE_THREADS": str(CLIENTS),
                                  "KERAS_SERVICE_LITE_RUNTIME": str(not args.no_lite).lower()},
                             ).start()
    rows = []
    try:
        y = np.eye(10, dtype=np.float32)[RNG.integers(0, 10, 128)]
        for name, layers, shape in (("lesson MLP", LESSON_LAYERS, (100,)),
                                    ("CNN 28x28x1", CNN_LAYERS, (28, 28, 1))):
            x = RNG.random((128, *shape), dtype=np.float32)
            model = trained_model(service, name.split()[0].lower(), layers, x, y)
            url = f"{service.url}/models/{model['id']}/predict"
            body = npy(x[:1])
            warm_up_lite(url, body, NPY)
            off = throughput(url, body, args.seconds)
            response = requests.patch(
                f"{service.url}/models/{model['id']}", json={"batching": BATCHING}, timeout=30)
            assert response.status_code == 200, response.text
            on = throughput(url, body, args.seconds)
            rows.append((name, off, on))
    finally:
        service.stop()
    print(f"machine: {describe_machine()}; {CLIENTS} clients, one row each, 1 worker; "
          f"batching {BATCHING}; {'TensorFlow only' if args.no_lite else 'LiteRT on'}")
    print("| model | off: req/s | off: p50 ms | on: req/s | on: p50 ms | speed-up |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, (off_rate, off_p50), (on_rate, on_p50) in rows:
        print(f"| {name} | {off_rate:.0f} | {off_p50:.1f} | {on_rate:.0f} | {on_p50:.1f} | "
              f"{on_rate / off_rate:.2f}x |")


if __name__ == "__main__":
    main()
