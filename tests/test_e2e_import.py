"""Import end to end: a real `keras-service serve` imports a `.keras` file in a process of its
own, serves it on the native API and /v1, and is left with only the processes it had."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.keras_files import clean_mlp, edited, saved
from tests.server import ServiceProcess, alive

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    server = ServiceProcess(tmp_path_factory.mktemp("import") / "data", workers=1).start()
    yield server
    server.stop()


def worker_children(service) -> list:
    """The processes web workers spawned: a builder each, and an import while one runs
    (multiprocessing's resource tracker aside)."""
    return [child for worker in service.role("web").children()
            for child in worker.children()
            if alive(child) and "resource_tracker" not in " ".join(child.cmdline())]


def wait_for(condition, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def test_an_imported_file_is_served_and_its_process_is_gone(service):
    assert wait_for(lambda: len(worker_children(service)) == 1)  # the builder
    builder = worker_children(service)[0].pid
    model = clean_mlp(name="imported-e2e")
    response = service.post("/models/import", files={"file": ("model.keras", saved(model))})
    assert response.status_code == 201, response.text
    imported = response.json()
    assert (imported["state"], imported["version"]) == ("trained", 1)

    x = np.random.default_rng(5).normal(size=(4, 4)).astype("float32")
    expected = model.predict(x, verbose=0)
    native = service.post(f"/models/{imported['id']}/predict", json={"instances": x.tolist()})
    served = service.post("/v1/models/imported-e2e:predict", json={"instances": x.tolist()})
    for answer in (native, served):
        assert answer.status_code == 200, answer.text
        np.testing.assert_allclose(answer.json()["predictions"], expected, rtol=1e-5, atol=1e-7)
    assert wait_for(lambda: [p.pid for p in worker_children(service)] == [builder])


def test_a_hostile_file_is_refused_by_the_running_service(service, tmp_path):
    canary = tmp_path / "canary"
    hostile = edited(saved(clean_mlp()), lambda config: config["config"]["layers"][1][
        "config"].update(kernel_initializer={"module": "os", "class_name": "system",
                                             "config": {"command": f"touch {canary}"},
                                             "registered_name": None}))
    response = service.post("/models/import", files={"file": ("model.keras", hostile)},
                            data={"name": "hostile-e2e"})
    assert response.status_code == 422 and 'module "os"' in response.json()["detail"]
    assert service.get("/models?name=hostile-e2e").json()["total"] == 0
    assert not canary.exists()
