"""The Open Inference Protocol end to end: Triton's own client against `keras-service serve`.

Models are built and trained through the API (the real trainer runs), then served at /v2 to
`tritonclient.http`, in JSON and in binary tensor data mode.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.conftest import LESSON_LAYERS
from tests.server import ServiceProcess
from tests.trained import LESSON_COMPILE, TWO_INPUTS, TWO_INPUTS_COMPILE

pytestmark = pytest.mark.slow
RNG = np.random.default_rng(11)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    server = ServiceProcess(tmp_path_factory.mktemp("oip") / "data", workers=2).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(service):
    client = triton.InferenceServerClient(url=f"127.0.0.1:{service.port}")
    yield client
    client.close()


def trained(service, name: str, create: dict, compile_spec: dict, data: dict) -> str:
    """Create, compile and fit a model over HTTP; wait for its version 1; return its name."""
    model = service.post("/models", json={"name": name, **create})
    assert model.status_code == 201, model.text
    model_id = model.json()["id"]
    assert service.post(f"/models/{model_id}/compile", json=compile_spec).status_code == 200
    dataset = service.post("/datasets", json=data)
    assert dataset.status_code == 201, dataset.text
    job = service.post(f"/models/{model_id}/fit", json={
        "dataset": dataset.json()["id"], "epochs": 1, "batch_size": 8})
    assert job.status_code == 202, job.text
    deadline = time.monotonic() + 180
    while (state := service.get(f"/jobs/{job.json()['id']}").json())["state"] not in (
            "succeeded", "failed", "cancelled"):
        assert time.monotonic() < deadline, state
        time.sleep(0.2)
    assert state["state"] == "succeeded", state
    return name


@pytest.fixture(scope="module")
def lesson(service):
    """The lesson's MLP: input_layer (100) -> activation_1 (10)."""
    x = RNG.random((32, 100)).round(4).tolist()
    y = np.eye(10)[RNG.integers(0, 10, 32)].tolist()
    return trained(service, "oip-lesson", {"layers": LESSON_LAYERS}, LESSON_COMPILE,
                   {"x": x, "y": y})


@pytest.fixture(scope="module")
def two_inputs(service):
    """Inputs features (4) and extra (3), outputs label (3) and score (1); the dataset's
    arrays carry the inputs' and outputs' names, which fit takes by default."""
    data = {"features": RNG.random((32, 4)).round(4).tolist(),
            "extra": RNG.random((32, 3)).round(4).tolist(),
            "label": np.eye(3)[RNG.integers(0, 3, 32)].tolist(),
            "score": RNG.random((32, 1)).round(4).tolist()}
    return trained(service, "oip-two", TWO_INPUTS, TWO_INPUTS_COMPILE, data)


def native_predict(service, name: str, inputs) -> dict:
    model_id = service.get("/models", params={"name": name}).json()["items"][0]["id"]
    response = service.post(f"/models/{model_id}/predict", json={"inputs": inputs})
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


def test_health_and_server_metadata(client):
    assert client.is_server_live() and client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata["name"] == "keras-model-service"
    assert "binary_tensor_data" in metadata["extensions"]


def test_model_metadata_and_readiness(client, lesson):
    assert client.is_model_ready(lesson) and client.is_model_ready(lesson, "1")
    assert not client.is_model_ready(lesson, "2")
    metadata = client.get_model_metadata(lesson)
    assert metadata["versions"] == ["1"] and metadata["platform"] == "keras"
    assert metadata["inputs"] == [{"name": "input_layer", "datatype": "FP32",
                                   "shape": [-1, 100]}]
    assert client.get_model_metadata(lesson, model_version="1") == metadata


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_infer_with_tritonclient_matches_the_native_route(service, client, lesson, binary):
    x = RNG.random((4, 100), dtype=np.float32)
    tensor = triton.InferInput("input_layer", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    result = client.infer(lesson, [tensor], model_version="1", request_id="e2e",
                          outputs=[triton.InferRequestedOutput("activation_1",
                                                               binary_data=binary)])
    assert result.get_response()["id"] == "e2e"
    assert result.get_response()["model_version"] == "1"
    probabilities = result.as_numpy("activation_1")
    assert probabilities.dtype == np.float32 and probabilities.shape == (4, 10)
    assert np.allclose(probabilities, native_predict(service, lesson, x.tolist()), atol=1e-6)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_two_inputs_and_two_outputs_with_tritonclient(service, client, two_inputs, binary):
    x = {"features": RNG.random((3, 4), dtype=np.float32),
         "extra": RNG.random((3, 3), dtype=np.float32)}
    tensors = []
    for name, array in x.items():
        tensors.append(triton.InferInput(name, list(array.shape), "FP32"))
        tensors[-1].set_data_from_numpy(array, binary_data=binary)
    result = client.infer(two_inputs, tensors, outputs=[
        triton.InferRequestedOutput("score", binary_data=binary),
        triton.InferRequestedOutput("label", binary_data=not binary)])
    assert [o["name"] for o in result.get_response()["outputs"]] == ["score", "label"]
    expected = native_predict(service, two_inputs, {k: v.tolist() for k, v in x.items()})
    assert np.allclose(result.as_numpy("label"), expected["label"], atol=1e-6)
    assert np.allclose(result.as_numpy("score"), expected["score"], atol=1e-5)
    # No outputs listed: tritonclient asks for all of them, in binary.
    everything = client.infer(two_inputs, tensors)
    assert np.allclose(everything.as_numpy("label"), expected["label"], atol=1e-6)


def test_errors_reach_tritonclient_as_messages(client, lesson):
    wrong = triton.InferInput("input_layer", [1, 99], "FP32")
    wrong.set_data_from_numpy(np.zeros((1, 99), dtype=np.float32), binary_data=True)
    with pytest.raises(InferenceServerException) as caught:
        client.infer(lesson, [wrong])
    assert caught.value.status() == "422"
    assert "expects (None, 100) float32, received (1, 99)" in caught.value.message()

    doubles = triton.InferInput("input_layer", [1, 100], "FP64")
    doubles.set_data_from_numpy(np.zeros((1, 100)), binary_data=False)
    with pytest.raises(InferenceServerException) as caught:
        client.infer(lesson, [doubles])
    assert caught.value.status() == "400" and "received FP64" in caught.value.message()

    with pytest.raises(InferenceServerException) as caught:
        client.get_model_metadata("no-such-model")
    assert caught.value.status() == "404"
