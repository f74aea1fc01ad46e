"""Memory of the whole service over many add-layer + compile cycles.

TensorFlow keeps state for every model built in a process; the service builds in recycled
builder processes so that this does not accumulate. This benchmark starts a real
`keras-service serve`, runs CYCLES cycles of (create model, add a layer, compile, delete)
and reports the service's total memory (PSS of gunicorn, its workers and their builders:
shared pages counted once) after a warm-up and at the end.

    .venv/bin/python bench/memory_build.py [--cycles 500] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.machine import describe_machine  # noqa: E402
from tests.server import ServiceProcess  # noqa: E402

WARM_UP = 20


def service_memory_mb(master_pid: int) -> float:
    master = psutil.Process(master_pid)
    total = 0
    for process in [master, *master.children(recursive=True)]:
        try:
            total += process.memory_full_info().pss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def one_cycle(service: ServiceProcess, index: int) -> None:
    model = service.post("/models", json={"name": f"bench-{index}", "layers": [
        {"type": "Dense", "units": 64, "input_dim": 32, "activation": "relu"}]}).json()
    response = service.post(f"/models/{model['id']}/layers",
                            json={"type": "Dense", "units": 10, "activation": "softmax"})
    assert response.status_code == 201, response.text
    response = service.post(f"/models/{model['id']}/compile",
                            json={"loss": "categorical_crossentropy", "optimizer": "adam"})
    assert response.status_code == 200, response.text
    assert service.delete(f"/models/{model['id']}").status_code == 204


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--recycle-after", type=int, default=None,
                        help="KERAS_SERVICE_BUILDER_RECYCLE_AFTER for this run (default: the "
                             "service's default); a huge value shows growth without recycling")
    args = parser.parse_args()
    env = ({"KERAS_SERVICE_BUILDER_RECYCLE_AFTER": str(args.recycle_after)}
           if args.recycle_after else {})

    with tempfile.TemporaryDirectory() as folder:
        service = ServiceProcess(Path(folder) / "data", workers=args.workers, env=env).start()
        try:
            for index in range(WARM_UP):
                one_cycle(service, -1 - index)
            time.sleep(2)
            baseline = service_memory_mb(service.process.pid)
            peak, started = baseline, time.perf_counter()
            for index in range(args.cycles):
                one_cycle(service, index)
                if index % 25 == 0:
                    peak = max(peak, service_memory_mb(service.process.pid))
            elapsed = time.perf_counter() - started
            time.sleep(2)
            final = service_memory_mb(service.process.pid)
        finally:
            service.stop()

    result = {
        "cycles": args.cycles, "workers": args.workers,
        "builder_recycle_after": args.recycle_after or "default (200)",
        "baseline_mb": round(baseline, 1), "final_mb": round(final, 1),
        "growth_mb": round(final - baseline, 1), "peak_mb": round(max(peak, final), 1),
        "ms_per_cycle": round(1000 * elapsed / args.cycles, 1),
        "machine": describe_machine(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
