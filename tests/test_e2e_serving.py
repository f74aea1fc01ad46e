"""Serving end to end: two gunicorn workers see a new version and a deletion without restart."""

from __future__ import annotations

import io
import re
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from tests.server import ServiceProcess, compiled_lesson_model, upload_npy

pytestmark = pytest.mark.slow
RNG = np.random.default_rng(11)
ROWS = RNG.random((4, 100), dtype=np.float32)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    server = ServiceProcess(tmp_path_factory.mktemp("serving") / "data", workers=2).start()
    yield server
    server.stop()


def fit(service, model_id: str, dataset_id: str) -> int:
    response = service.post(f"/models/{model_id}/fit",
                            json={"dataset": dataset_id, "epochs": 1, "batch_size": 16})
    assert response.status_code == 202, response.text
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        job = service.get(f"/jobs/{response.json()['id']}").json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            assert job["state"] == "succeeded", job["error"]
            return job["version"]
        time.sleep(0.2)
    raise AssertionError(f"the fit did not end: {job}")


def predict_many(service, model_id: str, count: int) -> list[requests.Response]:
    """`count` predicts, 8 at a time, each on a new connection: both workers answer some."""
    def one(_):
        return requests.post(f"{service.url}/models/{model_id}/predict", timeout=60,
                             json={"instances": ROWS.tolist()},
                             headers={"Connection": "close"})

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(count)))


def loads(service, model_id: str) -> float | None:
    """Versions of the model loaded so far, all workers (from /metrics, if it counts them)."""
    found = re.search(r'keras_service_model_cache_misses_total\{model="' + model_id
                      + r'"\} (\S+)', service.get("/metrics").text)
    return float(found.group(1)) if found else None


def trained_lesson(service, name: str) -> tuple[dict, dict]:
    """(model, dataset): the lesson's MLP fitted once on 64 random rows (version 1)."""
    model, dataset = compiled_lesson_model(service, name), upload_npy(service, 64, name)
    assert fit(service, model["id"], dataset["id"]) == 1
    return model, dataset


def test_every_worker_serves_a_new_version_and_forgets_a_deleted_model(service):
    model, dataset = trained_lesson(service, "served")

    # Both workers load version 1 (the metrics count one load per worker).
    for _ in range(10):
        answers = predict_many(service, model["id"], 40)
        assert {(a.status_code, a.json()["model_version"]) for a in answers} == {(200, 1)}
        if loads(service, model["id"]) in (None, 2.0):
            break
    assert loads(service, model["id"]) in (None, 2.0)
    before = np.array(answers[0].json()["predictions"])

    assert fit(service, model["id"], dataset["id"]) == 2
    answers = predict_many(service, model["id"], 40)
    assert {(a.status_code, a.json()["model_version"]) for a in answers} == {(200, 2)}
    assert {a.headers["X-Model-Version"] for a in answers} == {"2"}
    assert not np.allclose(np.array(answers[0].json()["predictions"]), before)
    # The first version stays addressable, in JSON and in binary.
    buffer = io.BytesIO()
    np.save(buffer, ROWS)
    v1 = service.post(f"/models/{model['id']}/predict?version=1", data=buffer.getvalue(),
                      headers={"Content-Type": "application/x-npy",
                               "Accept": "application/x-npy"})
    assert v1.status_code == 200 and v1.headers["X-Model-Version"] == "1"
    assert np.allclose(np.load(io.BytesIO(v1.content), allow_pickle=False), before, atol=1e-6)

    assert service.delete(f"/models/{model['id']}").status_code == 204
    answers = predict_many(service, model["id"], 40)
    assert {a.status_code for a in answers} == {404}
    assert service.get(f"/models/{model['id']}").status_code == 404
    assert service.get(f"/models/{model['id']}/versions").status_code == 404


def test_a_hot_version_moves_to_litert_in_every_worker_and_answers_as_before(service):
    model, _ = trained_lesson(service, "hot")
    on_tensorflow = np.array(predict_many(service, model["id"], 1)[0].json()["predictions"])

    moved = f"model '{model['id']}' version 1: LiteRT serves batches of up to"
    deadline = time.monotonic() + 120
    while service.log_path.read_text().count(moved) < 2 and time.monotonic() < deadline:
        answers = predict_many(service, model["id"], 40)  # past 100 small batches per worker
        assert {a.status_code for a in answers} == {200}
    assert service.log_path.read_text().count(moved) == 2  # once in each of the 2 workers

    answers = predict_many(service, model["id"], 40)
    for answer in answers:
        np.testing.assert_allclose(answer.json()["predictions"], on_tensorflow,
                                   rtol=1e-5, atol=1e-6)
