"""Training end to end: a real `keras-service serve` with its trainer, through HTTP only."""

from __future__ import annotations

import hashlib
import os
import signal
import time

import keras
import numpy as np
import psutil
import pytest
import requests

from tests.conftest import LESSON_LAYERS
from tests.files import compiled_file
from tests.server import (
    ServiceProcess,
    alive,
    compiled_lesson_model,
    upload_npy,
    wait_for_job,
)

pytestmark = pytest.mark.slow
RNG = np.random.default_rng(7)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    server = ServiceProcess(tmp_path_factory.mktemp("training") / "data", workers=2).start()
    yield server
    server.stop()


def assert_versions_intact(service, model_id: str) -> None:
    for version in service.get(f"/models/{model_id}/versions").json()["items"]:
        path = service.data_dir / "models" / model_id / f"v{version['number']}.keras"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == version["sha256"]
        keras.saving.load_model(path)
    assert not list(service.data_dir.rglob(".tmp-*"))


def test_the_lesson_story_fit_predict_download(service, tmp_path):
    model = compiled_lesson_model(service, "lesson")
    x = RNG.random((64, 100)).round(4).tolist()
    y = np.eye(10)[RNG.integers(0, 10, 64)].tolist()
    dataset = service.post("/datasets", json={"name": "lesson-data", "x": x, "y": y})
    assert dataset.status_code == 201, dataset.text
    assert dataset.json()["arrays"]["x"] == {"shape": [64, 100], "dtype": "float32"}

    started = time.monotonic()
    response = service.post(f"/models/{model['id']}/fit", json={
        "dataset": dataset.json()["id"], "epochs": 3, "batch_size": 16})
    assert time.monotonic() - started < 2.0
    assert response.status_code == 202, response.text
    assert response.headers["Location"] == f"/jobs/{response.json()['id']}"
    job = wait_for_job(service, response.json()["id"], ("succeeded", "failed"))
    assert job["state"] == "succeeded", job["error"]
    assert len(job["history"]["loss"]) == 3 and job["version"] == 1 and job["progress"] == 1.0
    assert job["started_at"] and job["finished_at"]

    trained = service.get(f"/models/{model['id']}").json()
    assert (trained["state"], trained["version"]) == ("trained", 1)
    prediction = service.post(f"/models/{model['id']}/predict", json={"instances": x[:5]})
    assert prediction.status_code == 200, prediction.text
    rows = np.array(prediction.json()["predictions"])
    assert rows.shape == (5, 10) and np.allclose(rows.sum(axis=1), 1.0, atol=1e-5)
    assert prediction.json()["model_version"] == 1

    artifact = service.get(f"/models/{model['id']}/versions/1/artifact")
    assert artifact.status_code == 200
    assert artifact.headers["ETag"].strip('"') == hashlib.sha256(artifact.content).hexdigest()
    (tmp_path / "downloaded.keras").write_bytes(artifact.content)
    plain = keras.saving.load_model(tmp_path / "downloaded.keras")
    assert np.allclose(plain.predict(np.array(x[:5]), verbose=0), rows, atol=1e-5)

    # Recompiling a trained model keeps its weights; only the training settings change.
    recompiled = service.post(f"/models/{model['id']}/compile", json={
        "loss": "categorical_crossentropy", "optimizer": {"type": "adam",
                                                          "learning_rate": 0.001}})
    assert recompiled.status_code == 200, recompiled.text
    assert (recompiled.json()["state"], recompiled.json()["version"]) == ("trained", 1)
    folder = service.data_dir / "models" / model["id"]
    kept = keras.saving.load_model(compiled_file(service.data_dir, model["id"])).get_weights()
    trained_weights = keras.saving.load_model(folder / "v1.keras").get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(kept, trained_weights, strict=True))

    # A second fit continues from version 1's weights and writes version 2.
    again = service.post(f"/models/{model['id']}/fit", json={
        "dataset": dataset.json()["id"], "epochs": 1, "batch_size": 16}).json()
    assert wait_for_job(service, again["id"], ("succeeded", "failed"))["version"] == 2
    assert [v["number"] for v in service.get(
        f"/models/{model['id']}/versions").json()["items"]] == [1, 2]
    assert_versions_intact(service, model["id"])


def test_events_stream_each_epoch_then_the_outcome(service):
    model = compiled_lesson_model(service, "streamed")
    dataset = upload_npy(service, 256, "stream-data")
    job = service.post(f"/models/{model['id']}/fit", json={
        "dataset": dataset["id"], "epochs": 4, "batch_size": 32,
        "validation_split": 0.25}).json()
    with requests.get(f"{service.url}/jobs/{job['id']}/events", stream=True,
                      timeout=180) as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        events = [line for line in stream.iter_lines(decode_unicode=True) if line]
    kinds = [line.split(": ", 1)[1] for line in events if line.startswith("event:")]
    assert kinds.count("epoch") == 4 and kinds[-1] == "end"
    ids = [line.split(": ", 1)[1] for line in events if line.startswith("id:")]
    assert ids == ["1", "2", "3", "4"]
    assert '"val_loss"' in next(line for line in events if '"epoch":4' in line)

    resumed = requests.get(f"{service.url}/jobs/{job['id']}/events",
                           headers={"Last-Event-ID": "3"}, timeout=30).text
    assert resumed.count("event: epoch") == 1 and "id: 4" in resumed


def test_cancel_stops_the_fit_and_leaves_the_model_as_it_was(service):
    model = compiled_lesson_model(service, "cancelled")
    before = service.get(f"/models/{model['id']}").json()
    dataset = upload_npy(service, 20_000, "long-data")
    job = service.post(f"/models/{model['id']}/fit", json={
        "dataset": dataset["id"], "epochs": 200, "batch_size": 32}).json()
    running = wait_for_job(service, job["id"], ("running",))
    deadline = time.monotonic() + 60
    while running["progress"] == 0 and time.monotonic() < deadline:
        running = service.get(f"/jobs/{job['id']}").json()
        time.sleep(0.2)
    assert 0 < running["progress"] < 1

    response = service.post(f"/jobs/{job['id']}/cancel")
    assert response.status_code == 200 and response.json()["state"] in ("cancelling",
                                                                         "cancelled")
    ended = wait_for_job(service, job["id"], ("cancelled", "failed", "succeeded"), timeout=30)
    assert ended["state"] == "cancelled"
    after = service.get(f"/models/{model['id']}").json()
    for field in ("state", "version", "layers", "compile", "params"):
        assert after[field] == before[field], field
    assert service.get(f"/models/{model['id']}/versions").json()["items"] == []
    assert service.post(f"/jobs/{job['id']}/cancel").status_code == 409
    assert not list((service.data_dir / "models" / model["id"]).glob("v*.keras"))


def test_killing_the_trainer_mid_fit_fails_the_job_as_interrupted(service):
    model = compiled_lesson_model(service, "interrupted")
    dataset = upload_npy(service, 20_000, "kill-data")
    job = service.post(f"/models/{model['id']}/fit", json={
        "dataset": dataset["id"], "epochs": 200, "batch_size": 32}).json()
    wait_for_job(service, job["id"], ("running",))
    trainer = service.role("trainer")
    job_processes = [child for child in trainer.children()
                     if "spawn_main" in " ".join(child.cmdline())]
    assert job_processes
    os.kill(trainer.pid, signal.SIGKILL)

    ended = wait_for_job(service, job["id"], ("failed", "succeeded", "cancelled"), timeout=60)
    assert ended["state"] == "failed" and ended["error"].startswith("interrupted")
    assert "Traceback" not in ended["error"]
    assert service.get(f"/models/{model['id']}").json()["state"] == "compiled"
    psutil.wait_procs(job_processes, timeout=10)
    assert not any(alive(p) for p in job_processes), "job processes die with the trainer"
    assert service.role("trainer").pid != trainer.pid
    assert_versions_intact(service, model["id"])

    # The restarted trainer takes new work.
    retry = service.post(f"/models/{model['id']}/fit", json={
        "dataset": dataset["id"], "epochs": 1, "batch_size": 512}).json()
    assert wait_for_job(service, retry["id"], ("succeeded", "failed"))["state"] == "succeeded"


def test_kill_9_of_the_whole_service_mid_fit_then_restart(tmp_path):
    data_dir = tmp_path / "data"
    server = ServiceProcess(data_dir, workers=1).start()
    try:
        model = compiled_lesson_model(server, "crash")
        dataset = upload_npy(server, 20_000, "crash-data")
        job = server.post(f"/models/{model['id']}/fit", json={
            "dataset": dataset["id"], "epochs": 200, "batch_size": 32}).json()
        wait_for_job(server, job["id"], ("running",))
        time.sleep(1.0)
        server.kill_hard()

        server = ServiceProcess(data_dir, workers=1).start()
        ended = wait_for_job(server, job["id"], ("failed",), timeout=60)
        assert ended["error"].startswith("interrupted")
        assert server.get(f"/models/{model['id']}").json()["state"] == "compiled"
        assert server.get("/jobs", params={"state": "running"}).json()["items"] == []
        assert_versions_intact(server, model["id"])
    finally:
        server.stop()


@pytest.mark.parametrize(("body", "status", "mentions"), [
    ({"epochs": 1}, 422, "dataset"),
    ({"dataset": "0" * 32, "epochs": 1}, 404, "dataset"),
    ({"dataset": "{dataset}", "epochs": 0}, 422, "epochs"),
    ({"dataset": "{dataset}", "epochs": 10**6}, 422, "KERAS_SERVICE_MAX_EPOCHS"),
    ({"dataset": "{dataset}", "epochs": 1, "batch_size": 10**7}, 422,
     "KERAS_SERVICE_MAX_BATCH_SIZE"),
    ({"dataset": "{dataset}", "epochs": 1, "x": "nope"}, 422, "no array 'nope'"),
    ({"dataset": "{dataset}", "epochs": 1, "x": "y"}, 422, "expects (None, 100) float32"),
    ({"dataset": "{dataset}", "epochs": 1, "validation_split": 1.5}, 422, "validation_split"),
    ({"dataset": "{dataset}", "epochs": 1, "validation_split": 0.2,
      "validation_dataset": "{dataset}"}, 422, "not both"),
    ({"dataset": "{dataset}", "epochs": "three"}, 422, "epochs"),
    ({"dataset": "{dataset}", "epochs": 1, "shuffle": "yes"}, 422, "shuffle"),
    ({"dataset": "{dataset}", "epochs": 1, "early_stopping": {"patience": -1}}, 422,
     "patience"),
    ({"dataset": "{dataset}", "epochs": 1, "class_weight": {"a": 1}}, 422, "class_weight"),
    ({"dataset": "{dataset}", "epochs": 1, "surprise": 1}, 422, "surprise"),
])
def test_bad_fit_requests_are_refused_before_queueing(service, body, status, mentions):
    model = compiled_lesson_model(service, f"bad-fit-{abs(hash(str(body)))}")
    dataset = service.post("/datasets", json={"x": [[0.5] * 100] * 4,
                                              "y": [[1] + [0] * 9] * 4}).json()
    body = {k: (v.format(dataset=dataset["id"]) if isinstance(v, str) else v)
            for k, v in body.items()}
    response = service.post(f"/models/{model['id']}/fit", json=body)
    assert response.status_code == status, response.text
    problem = response.json()
    assert mentions in problem["detail"] or any(
        mentions in e["path"] + e["message"] for e in problem.get("errors", []))
    assert service.get("/jobs", params={"model": model["id"]}).json()["total"] == 0
    assert service.get(f"/models/{model['id']}").json()["state"] == "compiled"


def test_fit_needs_a_compiled_model(service):
    draft = service.post("/models", json={"name": "draft-fit", "layers": LESSON_LAYERS}).json()
    dataset = service.post("/datasets", json={"x": [[0.5] * 100], "y": [[1] + [0] * 9]}).json()
    response = service.post(f"/models/{draft['id']}/fit",
                            json={"dataset": dataset["id"], "epochs": 1})
    assert response.status_code == 409 and "compile" in response.json()["detail"]


def test_eight_fits_on_eight_models_with_one_job_slot_all_succeed(service):
    dataset = service.post("/datasets", json={
        "x": RNG.random((64, 100)).round(3).tolist(),
        "y": np.eye(10)[RNG.integers(0, 10, 64)].tolist()}).json()
    jobs = []
    for index in range(8):
        model = compiled_lesson_model(service, f"queued-{index}")
        response = service.post(f"/models/{model['id']}/fit", json={
            "dataset": dataset["id"], "epochs": 2, "batch_size": 16})
        assert response.status_code == 202, response.text
        jobs.append(response.json()["id"])
    ended = [wait_for_job(service, job, ("succeeded", "failed", "cancelled"), timeout=300)
             for job in jobs]
    assert [job["state"] for job in ended] == ["succeeded"] * 8, [j["error"] for j in ended]
    # One slot: no two of them ran at the same time.
    spans = sorted((job["started_at"], job["finished_at"]) for job in ended)
    assert all(end <= next_start
               for (_, end), (next_start, _) in zip(spans, spans[1:], strict=False))
