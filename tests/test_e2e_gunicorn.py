"""End to end through a real `keras-service serve`: gunicorn, its workers, their builders."""

from __future__ import annotations

import time
from pathlib import Path

import keras
import psutil
import pytest

from tests.conftest import LESSON_LAYERS
from tests.files import compiled_file
from tests.server import ServiceProcess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    server = ServiceProcess(tmp_path_factory.mktemp("e2e") / "data", workers=2).start()
    yield server
    server.stop()


def build_lesson_model(service, name, compile_it=True) -> dict:
    response = service.post("/models", json={"name": name})
    assert response.status_code == 201, response.text
    model = response.json()
    for layer in LESSON_LAYERS:
        response = service.post(f"/models/{model['id']}/layers", json=layer)
        assert response.status_code == 201, response.text
    if compile_it:
        response = service.post(f"/models/{model['id']}/compile",
                                json={"loss": "categorical_crossentropy", "optimizer": "sgd"})
        assert response.status_code == 200, response.text
    return response.json()


def _loaded_libraries(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def test_lesson_story_through_gunicorn(service):
    model = build_lesson_model(service, "lesson")
    assert model["state"] == "compiled" and model["params"] == 11110

    text = service.get(f"/models/{model['id']}/summary", params={"format": "text"})
    assert text.status_code == 200 and "Total params: 11,110" in text.text
    path = compiled_file(service.data_dir, model["id"])
    loaded = keras.saving.load_model(path)
    assert loaded.count_params() == 11110
    assert loaded.loss.name == "categorical_crossentropy"
    assert type(loaded.optimizer).__name__ == "SGD"

    # Every worker answers the same, because all state is in the registry.
    for _ in range(12):
        assert service.get(f"/models/{model['id']}").json()["state"] == "compiled"


def test_tensorflow_is_never_imported_by_gunicorn_or_its_web_workers(service):
    # Keras work happens in builder processes; a web worker imports TensorFlow only when it
    # first serves a prediction, which this module never asks for.
    supervisor = psutil.Process(service.process.pid)
    assert len(supervisor.children()) == 2
    web_master, trainer = service.role("web"), service.role("trainer")
    workers = web_master.children()
    assert len(workers) == 2
    for process in [supervisor, web_master, *workers, trainer]:
        assert "tensorflow" not in _loaded_libraries(process.pid), process.cmdline()
    # (The other child, multiprocessing's resource tracker, has no TensorFlow either.)
    builders = [c for worker in workers for c in worker.children()
                if "spawn_main" in " ".join(c.cmdline())]
    assert builders, "each worker runs its Keras work in a builder process"
    deadline = time.monotonic() + 90  # builders import TensorFlow in the background at start
    while not all("tensorflow" in _loaded_libraries(b.pid) for b in builders):
        assert time.monotonic() < deadline, "the builders never imported TensorFlow"
        time.sleep(0.5)


def test_bad_input_never_takes_the_service_down(service):
    for body in (b"{", b"[]", b"null", b"\x00" * 10, b'{"name": 5}'):
        response = service.post("/models", data=body,
                                headers={"Content-Type": "application/json"})
        assert 400 <= response.status_code < 500
        assert response.headers["Content-Type"] == "application/problem+json"
    too_big = service.post("/models", data=b"x" * (17 * 1024 * 1024),
                           headers={"Content-Type": "application/json"})
    assert too_big.status_code == 413
    assert service.get("/healthz").status_code == 200


def test_kill_9_then_restart_keeps_every_model_and_its_state(tmp_path):
    data_dir = tmp_path / "data"
    server = ServiceProcess(data_dir, workers=1).start()
    try:
        compiled = build_lesson_model(server, "compiled-one")
        draft = build_lesson_model(server, "draft-one", compile_it=False)
        functional = server.post("/models", json={
            "name": "graph", "type": "functional", "inputs": [{"name": "x", "shape": [4]}],
            "layers": [{"type": "Dense", "name": "h", "inputs": ["x"], "units": 3}],
            "outputs": ["h"]}).json()
        before = {m["id"]: m for m in server.get("/models").json()["items"]}
        server.kill_hard()

        server = ServiceProcess(data_dir, workers=1).start()
        after = {m["id"]: m for m in server.get("/models").json()["items"]}
        assert after == before
        assert after[compiled["id"]]["state"] == "compiled"
        assert after[draft["id"]]["state"] == "draft"
        assert after[functional["id"]]["type"] == "functional"
        assert not list(data_dir.rglob(".tmp-*"))
        loaded = keras.saving.load_model(compiled_file(data_dir, compiled["id"]))
        assert loaded.count_params() == 11110
        # The restarted service goes on where it stopped.
        response = server.post(f"/models/{draft['id']}/compile",
                               json={"loss": "mse", "optimizer": "adam"})
        assert response.status_code == 200, response.text
    finally:
        server.stop()


def test_cli_options_come_from_the_environment_too(tmp_path):
    server = ServiceProcess(tmp_path / "data", workers=1,
                            env={"KERAS_SERVICE_THREADS": "2", "KERAS_SERVICE_MAX_LAYERS": "2"})
    server.start()
    try:
        model = server.post("/models", json={"name": "capped", "layers": LESSON_LAYERS[:2]})
        assert model.status_code == 201
        third = server.post(f"/models/{model.json()['id']}/layers", json=LESSON_LAYERS[2])
        assert third.status_code == 422
        assert "KERAS_SERVICE_MAX_LAYERS" in third.json()["detail"]
    finally:
        server.stop()
