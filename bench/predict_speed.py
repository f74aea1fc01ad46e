"""Predict latency against the floor and the usual Flask + Keras servers, and worker memory.

Starts, each in its own gunicorn with ONE worker (gthread, keep-alive) and on the same
`.keras` file (the lesson's MLP, trained by the service's own trainer):

- echo: Flask parsing its JSON body and answering it back: the floor;
- classic: ~20 lines of Flask calling `model.predict` (bench/servers/classic.py);
- on_batch: the same with `predict_on_batch` and stdlib json (bench/servers/on_batch.py);
- service: `keras-service serve --workers 1`.

One client (the standard library's http.client, a keep-alive connection per server, bodies
serialized once beforehand) measures p50 and p95 for 1 row and 1,000 rows of JSON, and for
the service 10,000 rows as JSON and as .npy, taking the servers in turns (ten rounds), so
that a shared machine's load drifts on all alike. http.client, not requests: requests costs
~1.5 ms of the client's own Python per call on a 2-core machine, more than the echo server
takes, and that would be counted in every server's figure.
The service is first warmed with 300 one-row predictions, past the threshold at which a
worker moves a hot version's small batches onto LiteRT. Then it sends 10,000 one-row
predictions to the service after a warm-up and reports how much the worker's memory (RSS)
grew.

    .venv/bin/python bench/predict_speed.py [--requests 200] [--no-lite]
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import psutil
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.machine import describe_machine  # noqa: E402
from tests.server import ServiceProcess, free_port  # noqa: E402

LESSON_LAYERS = [
    {"type": "Dense", "units": 100, "input_dim": 100, "activation": "relu"},
    {"type": "Dense", "units": 10, "activation": "softmax"},
]
RNG = np.random.default_rng(0)


def trained_model(service: ServiceProcess, name: str, layers: list, x: np.ndarray,
                  y: np.ndarray) -> dict:
    """Create, compile and fit a model through the API (the trainer writes v1)."""
    model = service.post("/models", json={"name": name, "layers": layers}).json()
    assert "id" in model, model
    response = service.post(f"/models/{model['id']}/compile",
                            json={"loss": "categorical_crossentropy", "optimizer": "sgd"})
    assert response.status_code == 200, response.text
    files = {}
    for array_name, array in (("x", x), ("y", y)):
        buffer = io.BytesIO()
        np.save(buffer, array)
        files[array_name] = (f"{array_name}.npy", buffer.getvalue())
    dataset = service.post("/datasets", files=files).json()
    job = service.post(f"/models/{model['id']}/fit",
                       json={"dataset": dataset["id"], "epochs": 1, "batch_size": 32}).json()
    while job["state"] not in ("succeeded", "failed", "cancelled"):
        time.sleep(0.3)
        job = service.get(f"/jobs/{job['id']}").json()
    assert job["state"] == "succeeded", job
    return service.get(f"/models/{model['id']}").json()


class Gunicorn:
    """`gunicorn -w 1 -k gthread` over one of bench/servers/, with MODEL_PATH set."""

    def __init__(self, module: str, model_path: Path, log_dir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log_dir / f"{module}.log", "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-w", "1", "-k", "gthread", "--threads", "4",
             "-b", f"127.0.0.1:{self.port}", f"bench.servers.{module}:app"],
            cwd=ROOT, env={**os.environ, "MODEL_PATH": str(model_path)},
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/ping", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                time.sleep(0.3)
        raise RuntimeError(f"{module} did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


class Connection:
    """A keep-alive HTTP/1.1 connection to one URL, opened again when the server closed it."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        self.path = parts.path
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)

    def post(self, body: bytes, content_type: str, accept: str) -> bytes:
        headers = {"Content-Type": content_type, "Accept": accept}
        try:
            self.connection.request("POST", self.path, body=body, headers=headers)
            response = self.connection.getresponse()
        except (http.client.RemoteDisconnected, ConnectionError):  # idle past keep-alive
            self.connection.close()
            self.connection.request("POST", self.path, body=body, headers=headers)
            response = self.connection.getresponse()
        data = response.read()
        assert response.status == 200, data[:300]
        return data


def warm_up_lite(url: str, body: bytes, content_type: str) -> None:
    """Make the version hot, as on a deployed endpoint: past KERAS_SERVICE_LITE_AFTER_CALLS
    small batches, after which the worker moves them onto LiteRT in the background."""
    connection = Connection(url)
    for _ in range(300):
        connection.post(body, content_type, "application/json")
    time.sleep(3)  # the conversion runs in the background


def interleaved(calls: dict[str, tuple[str, bytes, str, str]], count: int,
                rounds: int = 10) -> dict[str, tuple[float, float]]:
    """{name: (p50, p95) in ms} of `count` POSTs each, for `calls` {name: (url, body,
    content type, accept)}, one keep-alive connection each, taken in turns (`rounds` rounds
    of count/rounds requests per call), so that a change of the machine's load meanwhile
    weighs on every server alike. Each turn starts with an untimed request, which opens the
    connection again if the server closed it while the others had their turn."""
    connections = {name: Connection(calls[name][0]) for name in calls}

    def post(name: str) -> float:
        _, body, content_type, accept = calls[name]
        started = time.perf_counter()
        connections[name].post(body, content_type, accept)
        return (time.perf_counter() - started) * 1000

    for name in calls:  # warm-up
        for _ in range(max(5, count // 10)):
            post(name)
    samples: dict[str, list[float]] = {name: [] for name in calls}
    per_round = max(1, count // rounds)
    for _ in range(rounds):
        for name in calls:
            post(name)
            samples[name] += [post(name) for _ in range(per_round)]
    return {name: (statistics.median(values), sorted(values)[int(len(values) * 0.95) - 1])
            for name, values in samples.items()}


def json_body(rows: int) -> bytes:
    # What a Python client sends: stdlib json of float64 lists.
    return json.dumps({"instances": RNG.random((rows, 100)).tolist()}).encode()


def npy_body(rows: int) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, RNG.random((rows, 100), dtype=np.float32))
    return buffer.getvalue()


def worker_of(service: ServiceProcess) -> psutil.Process:
    master = next(p for p in psutil.Process(service.process.pid).children()
                  if "web" in p.cmdline())
    return master.children()[0]


def memory_growth(service: ServiceProcess, url: str, count: int) -> tuple[float, float]:
    """(RSS after warm-up, growth over `count` one-row predicts), in MB."""
    worker, connection = worker_of(service), Connection(url)
    body, json_type = json_body(1), "application/json"
    for _ in range(1000):
        connection.post(body, json_type, json_type)
    before = worker.memory_info().rss
    for _ in range(count):
        connection.post(body, json_type, json_type)
    return before / 2**20, (worker.memory_info().rss - before) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="timed requests per case")
    parser.add_argument("--memory-predictions", type=int, default=10_000)
    parser.add_argument("--no-lite", action="store_true",
                        help="serve every call on TensorFlow (KERAS_SERVICE_LITE_RUNTIME=false)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="predict-speed-"))
    # 10,000 rows of float64 JSON are ~20 MB: past the default body cap of 16 MB.
    service = ServiceProcess(work / "data", workers=1, env={
        "KERAS_SERVICE_MAX_BODY_BYTES": str(64 * 2**20),
        "KERAS_SERVICE_LITE_RUNTIME": str(not args.no_lite).lower()}).start()
    servers = {}
    try:
        x = RNG.random((256, 100), dtype=np.float32)
        y = np.eye(10, dtype=np.float32)[RNG.integers(0, 10, 256)]
        model = trained_model(service, "lesson", LESSON_LAYERS, x, y)
        model_path = work / "data" / "models" / model["id"] / "v1.keras"
        urls = {"service": f"{service.url}/models/{model['id']}/predict"}
        for name in ("echo", "classic", "on_batch"):
            servers[name] = Gunicorn(name, model_path, work)
            urls[name] = servers[name].url + "/predict"

        warm_up_lite(urls["service"], json_body(1), "application/json")
        results: dict[str, dict[str, tuple[float, float]]] = {}
        cases = [("1 row JSON", json_body(1), "application/json", args.requests),
                 ("1,000 rows JSON", json_body(1000), "application/json",
                  max(20, args.requests // 5))]
        json_type = "application/json"
        for case, body, content_type, count in cases:
            measured = interleaved({name: (urls[name], body, content_type, json_type)
                                    for name in ("echo", "classic", "on_batch", "service")},
                                   count)
            for name, result in measured.items():
                results.setdefault(name, {})[case] = result
        big_json, big_npy = json_body(10_000), npy_body(10_000)
        measured = interleaved({
            "on_batch": (urls["on_batch"], big_json, json_type, json_type),
            "service": (urls["service"], big_json, json_type, json_type),
            "service .npy": (urls["service"], big_npy, "application/x-npy",
                             "application/x-npy"),
        }, max(10, args.requests // 10), rounds=5)
        results["on_batch"]["10,000 rows JSON"] = measured["on_batch"]
        results["service"]["10,000 rows JSON"] = measured["service"]
        results["service"]["10,000 rows .npy"] = measured["service .npy"]
        rss, growth = memory_growth(service, urls["service"], args.memory_predictions)
    finally:
        for server in servers.values():
            server.stop()
        service.stop()

    print(f"machine: {describe_machine()}")
    print("| server | case | p50 ms | p95 ms |\n| --- | --- | --- | --- |")
    for name, cases_of in results.items():
        for case, (p50, p95) in cases_of.items():
            print(f"| {name} | {case} | {p50:.2f} | {p95:.2f} |")
    one = {name: results[name]["1 row JSON"][0] for name in results}
    thousand = {name: results[name]["1,000 rows JSON"][0] for name in results}
    ten = results["service"]
    print(f"\n1 row: service / echo = {one['service'] / one['echo']:.2f}x (target <= 2.5); "
          f"classic / service = {one['classic'] / one['service']:.1f}x (target >= 30)")
    print(f"1,000 rows: on_batch / service = {thousand['on_batch'] / thousand['service']:.1f}x "
          "(target >= 4)")
    print(f"10,000 rows: JSON / .npy = "
          f"{ten['10,000 rows JSON'][0] / ten['10,000 rows .npy'][0]:.1f}x (target >= 3)")
    print(f"worker memory: {rss:.0f} MB after warm-up, {growth:+.1f} MB over "
          f"{args.memory_predictions:,} predictions (target < 20)")


if __name__ == "__main__":
    main()
