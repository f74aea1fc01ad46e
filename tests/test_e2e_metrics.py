"""/metrics and the access log through a real `keras-service serve` with two gunicorn workers."""

from __future__ import annotations

import json
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest
import requests
from prometheus_client.mmap_dict import MmapedDict

from service.metrics import sized_metric_files
from tests.server import ServiceProcess
from tests.test_metrics import samples, value

pytestmark = pytest.mark.slow
ROUTE = {"method": "GET", "route": "/models/<model_id>", "status": "404"}


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e-metrics")
    metrics_dir = root / "prometheus"
    metrics_dir.mkdir()
    (metrics_dir / "counter_999999.db").write_bytes(b"left by an earlier run")
    server = ServiceProcess(root / "data", workers=2,
                            env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}).start()
    server.metrics_dir = metrics_dir
    yield server
    server.stop()


def get_model(service, ident: str) -> requests.Response:
    # A fresh connection each time (no session): the kernel hands it to either worker.
    return requests.get(f"{service.url}/models/{ident}", timeout=30,
                        headers={"X-Request-ID": f"e2e-{ident}", "Connection": "close"})


def wait_until(condition, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s"
        time.sleep(0.05)


def counted_by_each_worker(metrics_dir) -> dict[str, float]:
    """{file: its count of ROUTE}: each worker writes its own file, named by its pid."""
    counts = {}
    for path in sized_metric_files(str(metrics_dir)):  # a worker may be making its file
        if not os.path.basename(path).startswith("counter_"):
            continue
        for key, count, _, _ in MmapedDict.read_all_values_from_file(path):
            _, name, labels, _ = json.loads(key)
            if name == "keras_service_http_requests_total" and labels == ROUTE:
                counts[os.path.basename(path)] = count
    return counts


def test_every_worker_counts_and_any_worker_reports_the_total(service):
    assert not (service.metrics_dir / "counter_999999.db").exists(), "stale values emptied"
    sent = 0
    with ThreadPoolExecutor(8) as pool:
        # Until both workers have answered some of these requests.
        while len(counted_by_each_worker(service.metrics_dir)) < 2 and sent < 2000:
            responses = list(pool.map(lambda _: get_model(service, uuid.uuid4().hex),
                                      range(40)))
            assert all(response.status_code == 404 for response in responses)
            sent += len(responses)
    # Counted once each response is sent, so the last ones may land a moment after it.
    wait_until(lambda: sum(counted_by_each_worker(service.metrics_dir).values()) == sent)
    by_worker = counted_by_each_worker(service.metrics_dir)
    assert len(by_worker) == 2 and all(by_worker.values()), by_worker

    for _ in range(8):  # whichever worker answers the scrape, it sees every worker's counts
        response = requests.get(f"{service.url}/metrics", timeout=30,
                                headers={"Connection": "close"})
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        scraped = samples(response.text)
        assert value(scraped, "keras_service_http_requests_total", **ROUTE) == sent
        assert value(scraped, "keras_service_http_request_duration_seconds_count",
                     method="GET", route="/models/<model_id>") == sent
        for state in ("queued", "running", "succeeded", "failed", "cancelled"):
            assert ("keras_service_jobs", (("state", state),)) in scraped


def test_access_lines_are_json_with_the_request_id_and_gunicorn_logs_none(service):
    ident = uuid.uuid4().hex
    response = get_model(service, ident)
    assert response.headers["X-Request-ID"] == f"e2e-{ident}"

    def my_lines() -> list[dict]:
        text = service.log_path.read_text()
        written = text[:text.rfind("\n") + 1]  # a worker may be writing the last line
        lines = [orjson.loads(line) for line in written.splitlines() if line.startswith("{")]
        return [line for line in lines if line.get("request_id") == f"e2e-{ident}"]

    # The access line is written once the response is sent: a moment after the client has it.
    wait_until(my_lines)
    mine = my_lines()
    assert len(mine) == 1
    assert mine[0]["route"] == "/models/<model_id>" and mine[0]["path"] == f"/models/{ident}"
    assert mine[0]["status"] == 404 and mine[0]["user_agent"].startswith("python-requests")
    # gunicorn's own access format ('"GET /models/... HTTP/1.1" 404') stays off.
    assert f'"GET /models/{ident} HTTP/1.1"' not in service.log_path.read_text()
