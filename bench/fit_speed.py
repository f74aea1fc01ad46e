"""A fit through the service against plain Keras `model.fit`, on the same data and settings.

The lesson's MLP (Dense 100 on 100 inputs, relu, Dense 10, softmax; categorical
crossentropy, sgd) on 60,000 x 100 float32 rows, 5 epochs, batch 32. Plain: `model.fit` in
one fresh process, timed around the call. Service: a real `keras-service serve`, timed from
the fit request to the job's end as a client sees it (polling GET /jobs/{id} every 20 ms).
The target is service / plain <= 1.10.

    .venv/bin/python bench/fit_speed.py [--rounds 3] [--rows 60000] [--epochs 5]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.machine import describe_machine  # noqa: E402
from tests.conftest import LESSON_LAYERS  # noqa: E402
from tests.server import ServiceProcess  # noqa: E402

PLAIN_FIT = """
import sys, time, numpy as np, keras
x, y = np.load(sys.argv[1]), np.load(sys.argv[2])
epochs, batch = int(sys.argv[3]), int(sys.argv[4])
model = keras.Sequential([keras.Input(shape=(100,)), keras.layers.Dense(100),
                          keras.layers.Activation("relu"), keras.layers.Dense(10),
                          keras.layers.Activation("softmax")])
model.compile(loss="categorical_crossentropy", optimizer="sgd")
started = time.perf_counter()
model.fit(x, y, epochs=epochs, batch_size=batch, verbose=0)
print(time.perf_counter() - started)
"""


def make_data(rows: int, folder: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    x = rng.random((rows, 100), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, rows)]
    np.save(folder / "x.npy", x)
    np.save(folder / "y.npy", y)
    return folder / "x.npy", folder / "y.npy"


def plain_fit_seconds(x_path: Path, y_path: Path, epochs: int, batch: int) -> float:
    output = subprocess.run([sys.executable, "-c", PLAIN_FIT, str(x_path), str(y_path),
                             str(epochs), str(batch)], capture_output=True, text=True,
                            check=True, env={"TF_CPP_MIN_LOG_LEVEL": "2", "PATH": ""})
    return float(output.stdout.strip().splitlines()[-1])


def service_fit_seconds(service: ServiceProcess, model_id: str, dataset_id: str,
                        epochs: int, batch: int) -> float:
    started = time.perf_counter()
    job = service.post(f"/models/{model_id}/fit", json={
        "dataset": dataset_id, "epochs": epochs, "batch_size": batch, "shuffle": True}).json()
    while True:
        state = service.get(f"/jobs/{job['id']}").json()
        if state["state"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.1)
    elapsed = time.perf_counter() - started
    assert state["state"] == "succeeded", state
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        x_path, y_path = make_data(args.rows, folder)
        service = ServiceProcess(folder / "data", workers=1).start()
        try:
            files = {name: (path.name, io.BytesIO(path.read_bytes()))
                     for name, path in (("x", x_path), ("y", y_path))}
            dataset = service.post("/datasets", files=files).json()
            model = service.post("/models", json={"name": "bench", "layers": LESSON_LAYERS}
                                 ).json()
            service.post(f"/models/{model['id']}/compile",
                         json={"loss": "categorical_crossentropy", "optimizer": "sgd"})
            plain, served = [], []
            for _ in range(args.rounds):
                # Alternate, so that drift in the machine's load hits both alike.
                plain.append(plain_fit_seconds(x_path, y_path, args.epochs, args.batch_size))
                served.append(service_fit_seconds(service, model["id"], dataset["id"],
                                                  args.epochs, args.batch_size))
                time.sleep(8)  # the trainer warms its next job process meanwhile
        finally:
            service.stop()

    result = {
        "rows": args.rows, "epochs": args.epochs, "batch_size": args.batch_size,
        "plain_fit_s": [round(s, 2) for s in plain],
        "service_fit_s": [round(s, 2) for s in served],
        "plain_median_s": round(statistics.median(plain), 2),
        "service_median_s": round(statistics.median(served), 2),
        "ratio": round(statistics.median(served) / statistics.median(plain), 3),
        "machine": describe_machine(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
