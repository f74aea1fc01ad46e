"""What the request id, the HTTP metrics and the JSON access log add to every request.

A bare Flask app with one JSON route is called through WSGI (no sockets, no test client) with
and without `request_log.install`, in prometheus-client's multiprocess mode as under gunicorn
(values written to memory-mapped files). Access lines go to /dev/null: the cost measured is
building and writing the line, not the terminal. Reported: microseconds per request, the
best of many interleaved rounds (the least disturbed by other processes, as timeit does),
against the ~1 ms target of a one-row predict.

    .venv/bin/python bench/request_overhead.py [--requests 2000] [--rounds 30]
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

# Multiprocess mode is chosen when prometheus_client is imported: set the folder first.
os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="bench-metrics-")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask import Flask  # noqa: E402
from werkzeug.test import EnvironBuilder  # noqa: E402

from service import request_log  # noqa: E402


def make_app(instrumented: bool, access_log: bool) -> Flask:
    app = Flask(__name__)
    if instrumented:
        request_log.install(app, access_log_enabled=access_log)

    @app.post("/models/<model_id>/predict")
    def predict(model_id):
        return {"predictions": [[0.5]], "model_version": 1}

    return app


def per_request_us(app: Flask, requests: int) -> float:
    environ = EnvironBuilder(path="/models/abc/predict", method="POST",
                             json={"instances": [[1.0]]},
                             headers={"User-Agent": "bench"}).get_environ()
    body = environ["wsgi.input"].read()

    def start_response(status, headers):
        return None

    started = time.perf_counter()
    for _ in range(requests):
        environ["wsgi.input"] = io.BytesIO(body)
        answer = app(dict(environ), start_response)
        for _chunk in answer:
            pass
        answer.close()  # as a server does: the access line and the metrics are written now
    return (time.perf_counter() - started) / requests * 1e6


def hooks_us(access_log: bool, calls: int, rounds: int) -> float:
    """The two hooks alone, called in a request context: no Flask noise around them."""
    app = make_app(True, access_log)
    start, finish = app.before_request_funcs[None][0], app.after_request_funcs[None][0]
    with app.test_request_context("/models/abc/predict", method="POST",
                                  headers={"User-Agent": "bench"}):
        best = float("inf")
        for _ in range(rounds):
            started = time.perf_counter()
            for _ in range(calls):
                response = app.response_class(b'{"predictions": [[0.5]]}',
                                              mimetype="application/json")
                start()
                finish(response).close()  # what finish leaves for the server's close()
            best = min(best, (time.perf_counter() - started) / calls * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    request_log.configure_access_logger()
    for handler in request_log.access_log.handlers:
        handler.setStream(open(os.devnull, "w"))  # noqa: SIM115
    apps = {"bare Flask": make_app(False, False),
            "+ id, metrics": make_app(True, False),
            "+ id, metrics, access log": make_app(True, True)}
    logging.getLogger().setLevel(logging.WARNING)
    results = {name: [] for name in apps}
    for _ in range(args.rounds):
        for name, app in apps.items():
            per_request_us(app, args.requests // 10)  # warm up: metric children, caches
            results[name].append(per_request_us(app, args.requests))
    base = min(results["bare Flask"])
    print(f"{'app':28} {'us/request':>10} {'added us':>9}")
    for name, values in results.items():
        print(f"{name:28} {min(values):10.1f} {min(values) - base:9.1f}")
    print("the hooks alone (and building a response), us/request: id + metrics "
          f"{hooks_us(False, args.requests, args.rounds):.1f}, with the access log "
          f"{hooks_us(True, args.requests, args.rounds):.1f}")


if __name__ == "__main__":
    main()
