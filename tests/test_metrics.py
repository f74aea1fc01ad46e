"""GET /metrics: the text format, route templates as labels, predictions, cache, jobs."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from service import metrics
from service.inference import ModelCache
from service.server import METRICS_DIR_ENV, prepare_metrics_dir
from tests.conftest import LESSON_LAYERS
from tests.trained import LESSON_COMPILE, compiled_model, lesson_data, train_version

ROOT = Path(__file__).parent.parent


def samples(text: str) -> dict[tuple, float]:
    """{(sample name, ((label, value), ...)): value} of a scrape."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def scrape(client) -> dict[tuple, float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    return samples(response.get_data(as_text=True))


def value(scraped: dict, name: str, **labels) -> float:
    return scraped.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_are_prometheus_text(client):
    client.get("/healthz").close()  # counted once the server closes the response
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = response.get_data(as_text=True)
    for name in ("keras_service_http_requests_total",
                 "keras_service_http_request_duration_seconds_bucket",
                 "keras_service_jobs"):
        assert f"\n{name}{{" in text or text.startswith(f"{name}{{"), name
    assert "_created" not in text


def test_requests_are_counted_by_route_template_method_and_status(client):
    before = scrape(client)
    ids = [uuid.uuid4().hex for _ in range(3)]
    for ident in ids:
        with client.get(f"/models/{ident}") as response:  # counted when closed, as servers do
            assert response.status_code == 404
    client.get("/healthz").close()
    text = client.get("/metrics").get_data(as_text=True)
    after = samples(text)
    labels = {"method": "GET", "route": "/models/<model_id>", "status": "404"}
    assert value(after, "keras_service_http_requests_total", **labels) - \
        value(before, "keras_service_http_requests_total", **labels) == 3
    latency = {"method": "GET", "route": "/models/<model_id>"}
    assert value(after, "keras_service_http_request_duration_seconds_count", **latency) >= 3
    assert value(after, "keras_service_http_requests_total",
                 method="GET", route="/healthz", status="200") >= 1
    assert not any(ident in text for ident in ids), "raw paths must never be label values"


def test_jobs_by_state_are_read_from_the_registry(client):
    scraped = scrape(client)
    for state in ("queued", "running", "cancelling", "succeeded", "failed", "cancelled"):
        assert ("keras_service_jobs", (("state", state),)) in scraped
    model = compiled_model(client, f"jobs-{uuid.uuid4().hex[:8]}", LESSON_COMPILE,
                           layers=LESSON_LAYERS)
    dataset = client.post("/datasets", json={"x": [[0.0] * 100] * 4,
                                             "y": [[1.0] + [0.0] * 9] * 4}).get_json()
    before = value(scraped, "keras_service_jobs", state="queued")
    response = client.post(f"/models/{model['id']}/fit",
                           json={"dataset": dataset["id"], "epochs": 1, "batch_size": 2})
    assert response.status_code == 202, response.get_json()
    assert value(scrape(client), "keras_service_jobs", state="queued") == before + 1
    client.post(f"/jobs/{response.get_json()['id']}/cancel")


def test_predictions_rows_batch_sizes_and_cache_are_counted_per_model(app, client):
    model = compiled_model(client, f"metrics-{uuid.uuid4().hex[:8]}", LESSON_COMPILE,
                           layers=LESSON_LAYERS)
    train_version(app, model["id"], *lesson_data())
    x, _ = lesson_data(rows=3, seed=2)
    for _ in range(2):
        response = client.post(f"/models/{model['id']}/predict",
                               json={"instances": x.tolist()})
        assert response.status_code == 200, response.get_json()
    scraped = scrape(client)
    assert value(scraped, "keras_service_predictions_total", model=model["id"]) == 2
    assert value(scraped, "keras_service_prediction_rows_total", model=model["id"]) == 6
    assert value(scraped, "keras_service_prediction_batch_size_bucket",
                 model=model["id"], le="4.0") == 2
    assert value(scraped, "keras_service_model_cache_misses_total", model=model["id"]) == 1
    assert value(scraped, "keras_service_model_cache_hits_total", model=model["id"]) == 1
    assert value(scraped, "keras_service_model_load_seconds_count", model=model["id"]) == 1


def test_a_failed_load_counts_a_miss_but_no_load_time():
    cache, key = ModelCache(2), (f"failing-{uuid.uuid4().hex[:8]}", 1, "sha", False)

    def broken():
        raise RuntimeError("cannot load")

    with pytest.raises(RuntimeError):
        cache.get(key, broken)
    scraped = samples(metrics.exposition({}).decode())
    assert value(scraped, "keras_service_model_cache_misses_total", model=key[0]) == 1
    assert value(scraped, "keras_service_model_load_seconds_count", model=key[0]) == 0


WORKER = """
import sys
from service import metrics
for _ in range(int(sys.argv[1])):
    metrics.observe_request("GET", "/healthz", 200, 0.001)
"""
SCRAPE = """
from service import metrics
print(metrics.exposition({"queued": 2}).decode())
"""


@pytest.mark.parametrize("unsized_file", [False, True])
def test_multiprocess_mode_adds_up_every_process(tmp_path, unsized_file):
    """What gunicorn's workers do, in miniature: two writers, a third process scrapes.

    A worker that made its file but died before sizing it leaves 0 bytes behind, which
    prometheus-client alone cannot read (prometheus/client_python#1199)."""
    env = {**os.environ, METRICS_DIR_ENV: str(tmp_path)}
    for count in (3, 4):
        subprocess.run([sys.executable, "-c", WORKER, str(count)], env=env, cwd=ROOT,
                       check=True)
    if unsized_file:
        (tmp_path / "counter_424242.db").touch()
    out = subprocess.run([sys.executable, "-c", SCRAPE], env=env, cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    scraped = samples(out)
    assert value(scraped, "keras_service_http_requests_total",
                 method="GET", route="/healthz", status="200") == 7
    assert value(scraped, "keras_service_http_request_duration_seconds_count",
                 method="GET", route="/healthz") == 7
    assert value(scraped, "keras_service_jobs", state="queued") == 2


def test_the_web_server_starts_with_an_empty_metrics_folder(tmp_path, monkeypatch):
    given = tmp_path / "given"
    given.mkdir()
    (given / "counter_123.db").write_bytes(b"stale")
    monkeypatch.setenv(METRICS_DIR_ENV, str(given))
    assert prepare_metrics_dir() is None and not list(given.iterdir())

    monkeypatch.delenv(METRICS_DIR_ENV)
    made = prepare_metrics_dir()
    try:
        assert os.environ[METRICS_DIR_ENV] == made and Path(made).is_dir()
        assert not list(Path(made).iterdir())
    finally:
        Path(made).rmdir()


WEB = """
import sys
from service import server
from service.config import Config

def gunicorn(config, worker_exited):  # where gunicorn would fork the workers
    from prometheus_client import values
    print(values.ValueClass.__name__)

server._run_gunicorn = gunicorn
server.run_web(Config.from_env(environ={}, data_dir=sys.argv[1]), exposure_checked=True)
"""


def test_the_web_server_forks_its_workers_with_metrics_in_the_shared_folder(tmp_path):
    """Without PROMETHEUS_MULTIPROC_DIR given: the folder is made before anything imports
    prometheus-client, so the workers write there, where every scrape reads."""
    env = {key: value for key, value in os.environ.items() if key != METRICS_DIR_ENV}
    out = subprocess.run([sys.executable, "-c", WEB, str(tmp_path / "data")], env=env,
                         cwd=ROOT, check=True, capture_output=True, text=True).stdout
    assert out.strip() == "MmapedValue"  # prometheus-client's multiprocess value
