"""The Open Inference Protocol at /v2 through the app: health, metadata, infer, errors."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from tritonclient.http import InferenceServerClient, InferInput, InferRequestedOutput

from service.oip import DATATYPE_OF
from tests.conftest import LESSON_LAYERS
from tests.trained import (
    LESSON_COMPILE,
    compiled_model,
    lesson_data,
    load_version_file,
    two_input_data,
)

HEADER = "Inference-Header-Content-Length"


def keras_predict(config, model: dict, x):
    return load_version_file(config, model).predict(x, verbose=0)


def infer(client, model: dict, inputs: dict, *, binary=False, outputs=None, path=""):
    """POST .../infer with a body written by tritonclient; the answer as a tritonclient result."""
    tensors = []
    for name, array in inputs.items():
        tensor = InferInput(name, list(array.shape), DATATYPE_OF[array.dtype])
        tensor.set_data_from_numpy(array, binary_data=binary)
        tensors.append(tensor)
    body, json_size = InferenceServerClient.generate_request_body(tensors, outputs=outputs)
    headers = {} if json_size is None else {HEADER: str(json_size)}
    response = client.post(f"/v2/models/{model['name']}{path}/infer", data=body,
                           headers=headers)
    return response


def result_of(response):
    length = response.headers.get(HEADER)
    return InferenceServerClient.parse_response_body(
        response.data, header_length=None if length is None else int(length))


# -- health and metadata ---------------------------------------------------------------------

def test_server_metadata_lists_the_binary_extension(client):
    response = client.get("/v2")
    assert response.status_code == 200
    assert response.get_json() == {"name": "keras-model-service", "version": "0.1.0",
                                   "extensions": ["binary_tensor_data"]}


def test_live_and_ready(client):
    assert (client.get("/v2/health/live").status_code,
            client.get("/v2/health/live").get_json()) == (200, {"live": True})
    assert (client.get("/v2/health/ready").status_code,
            client.get("/v2/health/ready").get_json()) == (200, {"ready": True})


def test_not_ready_when_the_artifact_store_is_read_only(app, client, monkeypatch):
    monkeypatch.setattr(app.extensions["keras_service"].store, "is_writable", lambda: False)
    response = client.get("/v2/health/ready")
    assert response.status_code == 503
    assert response.get_json() == {"ready": False, "error": "Unavailable: artifact store."}


def test_model_metadata_gives_datatypes_and_minus_one_for_the_batch(client, lesson):
    expected = {"name": lesson["name"], "versions": ["1"], "platform": "keras",
                "inputs": [{"name": "input_layer", "datatype": "FP32", "shape": [-1, 100]}],
                "outputs": [{"name": "activation_1", "datatype": "FP32", "shape": [-1, 10]}]}
    assert client.get(f"/v2/models/{lesson['name']}").get_json() == expected
    assert client.get(f"/v2/models/{lesson['name']}/versions/1").get_json() == expected


def test_metadata_of_a_functional_model_names_every_input_and_output(client, two_inputs):
    body = client.get(f"/v2/models/{two_inputs['name']}").get_json()
    assert body["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 4]},
                              {"name": "extra", "datatype": "FP32", "shape": [-1, 3]}]
    assert body["outputs"] == [{"name": "label", "datatype": "FP32", "shape": [-1, 3]},
                               {"name": "score", "datatype": "FP32", "shape": [-1, 1]}]


def test_model_ready_once_trained(client, lesson, unique_name):
    assert client.get(f"/v2/models/{lesson['name']}/ready").get_json() == {
        "name": lesson["name"], "ready": True}
    assert client.get(f"/v2/models/{lesson['name']}/versions/1/ready").status_code == 200
    compiled_model(client, unique_name, LESSON_COMPILE, layers=LESSON_LAYERS)
    response = client.get(f"/v2/models/{unique_name}/ready")
    assert response.status_code == 503
    assert response.get_json()["ready"] is False
    assert "no trained version yet" in response.get_json()["error"]


# -- infer -----------------------------------------------------------------------------------

@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_infer_matches_keras(client, config, lesson, binary):
    x, _ = lesson_data(rows=3, seed=5)
    response = infer(client, lesson, {"input_layer": x}, binary=binary, outputs=[
        InferRequestedOutput("activation_1", binary_data=binary)])
    assert response.status_code == 200, response.data[:500]
    assert response.mimetype == ("application/octet-stream" if binary else "application/json")
    assert (HEADER in response.headers) is binary
    result = result_of(response)
    header = result.get_response()
    assert (header["model_name"], header["model_version"]) == (lesson["name"], "1")
    output = result.get_output("activation_1")
    assert (output["shape"], output["datatype"]) == ([3, 10], "FP32")
    assert np.allclose(result.as_numpy("activation_1"), keras_predict(config, lesson, x),
                       atol=1e-6)


def test_a_json_request_by_hand_with_nested_data_and_an_id(client, lesson):
    x, _ = lesson_data(rows=2, seed=6)
    tensor = {"name": "input_layer", "shape": [2, 100], "datatype": "FP32"}
    nested = client.post(f"/v2/models/{lesson['name']}/versions/1/infer", json={
        "id": "my-request", "inputs": [{**tensor, "data": x.tolist()}]})
    flat = client.post(f"/v2/models/{lesson['name']}/infer", json={
        "inputs": [{**tensor, "data": x.ravel().tolist()}]})
    assert nested.status_code == 200 and flat.status_code == 200
    assert nested.get_json()["id"] == "my-request"
    assert nested.get_json()["outputs"][0]["data"] == flat.get_json()["outputs"][0]["data"]
    assert len(nested.get_json()["outputs"][0]["data"]) == 20  # flat, row-major


def test_without_outputs_tritonclient_gets_every_output_in_binary(client, two_inputs):
    x, _ = two_input_data(rows=4, seed=7)
    response = infer(client, two_inputs, x)
    assert response.status_code == 200
    result = result_of(response)
    assert [o["name"] for o in result.get_response()["outputs"]] == ["label", "score"]
    assert all("binary_data_size" in o["parameters"] for o in result.get_response()["outputs"])
    assert result.as_numpy("label").shape == (4, 3) and result.as_numpy("score").shape == (4, 1)


def test_two_inputs_two_outputs_in_the_order_and_format_asked(client, config, two_inputs):
    x, _ = two_input_data(rows=5, seed=8)
    swapped = {"extra": x["extra"], "features": x["features"]}  # any input order
    response = infer(client, two_inputs, swapped, binary=True, outputs=[
        InferRequestedOutput("score", binary_data=False),
        InferRequestedOutput("label", binary_data=True)])
    assert response.status_code == 200
    result = result_of(response)
    outputs = result.get_response()["outputs"]
    assert [o["name"] for o in outputs] == ["score", "label"]
    assert "data" in outputs[0] and outputs[1]["parameters"]["binary_data_size"] == 5 * 3 * 4
    label, score = keras_predict(config, two_inputs, x)
    assert np.allclose(result.as_numpy("label"), label, atol=1e-6)
    assert np.allclose(result.as_numpy("score"), score, atol=1e-5)


def test_an_output_subset_answers_only_that_output(client, two_inputs):
    x, _ = two_input_data(rows=2, seed=9)
    response = infer(client, two_inputs, x, outputs=[
        InferRequestedOutput("score", binary_data=False)])
    assert [o["name"] for o in response.get_json()["outputs"]] == ["score"]


@pytest.mark.parametrize("dtype", ["float16", "int8", "uint8", "int16", "bool"])
def test_datatypes_that_convert_without_loss_are_accepted(client, lesson, dtype):
    x = (np.arange(200).reshape(2, 100) % 2).astype(dtype)
    response = infer(client, lesson, {"input_layer": x}, binary=True)
    assert response.status_code == 200, response.data[:300]
    assert result_of(response).as_numpy("activation_1").shape == (2, 10)


# -- errors ----------------------------------------------------------------------------------

ROW = np.zeros((1, 100), dtype="float32")
NAN_ROW = np.full((1, 100), np.nan, dtype="float32")


def _tensor(name="input_layer", shape=(1, 100), datatype="FP32", data=None):
    return {"name": name, "shape": list(shape), "datatype": datatype,
            "data": [0.0] * int(np.prod(shape)) if data is None else data}


BAD_INFERS = [
    # (id, path suffix, JSON body or (binary body, header length), status, words)
    ("wrong width", "", {"inputs": [_tensor(shape=(1, 99))]}, 422,
     "input 'input_layer' expects (None, 100) float32, received (1, 99)"),
    ("no batch dimension", "", {"inputs": [_tensor(shape=(100,))]}, 422,
     "wrap it in a list"),
    ("unknown input", "", {"inputs": [_tensor(), _tensor(name="other")]}, 400,
     "unknown input 'other'"),
    ("missing input", "", {"inputs": [_tensor(name="other")]}, 400,
     "missing input 'input_layer'"),
    ("unknown output", "", {"inputs": [_tensor()], "outputs": [{"name": "probs"}]}, 400,
     "unknown output 'probs'; the model's outputs are 'activation_1'"),
    ("FP64 for an FP32 input", "", {"inputs": [_tensor(datatype="FP64")]}, 400,
     "is FP32; received FP64, which does not convert to it without loss"),
    ("INT64 for an FP32 input", "", {"inputs": [_tensor(datatype="INT64",
                                                        data=[0] * 100)]}, 400,
     "received INT64"),
    ("BYTES", "", {"inputs": [_tensor(datatype="BYTES", data=["a"] * 100)]}, 400,
     "datatype BYTES is not supported"),
    ("wrong length for the shape", "", {"inputs": [_tensor(data=[0.0] * 99)]}, 400,
     "data holds 99 element(s); shape [1, 100] takes 100"),
    ("NaN in FP32 binary", "", (NAN_ROW.tobytes(), "binary"), 422, "NaN or infinity"),
    ("unknown version", "/versions/7", {"inputs": [_tensor()]}, 404, "has no version 7"),
    ("version not a number", "/versions/latest", {"inputs": [_tensor()]}, 400,
     "a positive integer; received 'latest'"),
    ("version zero", "/versions/0", {"inputs": [_tensor()]}, 400, "received '0'"),
    ("empty body", "", (b"", None), 400, "not valid JSON"),
    ("too large", "", (b"0" * (1024 * 1024 + 1), None), 413, "KERAS_SERVICE_MAX_BODY_BYTES"),
]


def _send(client, model: dict, path: str, body, **headers):
    url = f"/v2/models/{model['name']}{path}/infer"
    if isinstance(body, dict):
        return client.post(url, json=body, headers=headers)
    data, length = body
    if length == "binary":  # one FP32 input after a JSON header
        header = orjson.dumps({"inputs": [{"name": "input_layer", "shape": [1, 100],
                                           "datatype": "FP32",
                                           "parameters": {"binary_data_size": len(data)}}]})
        data, length = header + data, str(len(header))
    if length is not None:
        headers[HEADER] = length
    return client.post(url, data=data, headers=headers)


@pytest.mark.parametrize("path, body, status, words", [case[1:] for case in BAD_INFERS],
                         ids=[case[0] for case in BAD_INFERS])
def test_a_bad_infer_is_a_4xx_error_object(client, lesson, path, body, status, words):
    response = _send(client, lesson, path, body)
    assert response.status_code == status, response.data[:300]
    assert response.mimetype == "application/json"
    assert list(response.get_json()) == ["error"]
    assert words in response.get_json()["error"]


def test_a_compressed_body_is_a_415(client, lesson):
    response = _send(client, lesson, "", {"inputs": [_tensor()]}, **{"Content-Encoding": "gzip"})
    assert response.status_code == 415
    assert "Content-Encoding" in response.get_json()["error"]


def test_an_untrained_model_is_a_409_and_an_unknown_one_a_404(client, unique_name):
    compiled_model(client, unique_name, LESSON_COMPILE, layers=LESSON_LAYERS)
    response = client.post(f"/v2/models/{unique_name}/infer", json={"inputs": [_tensor()]})
    assert response.status_code == 409 and "fit it first" in response.get_json()["error"]
    for path in ("/v2/models/no-such-model", "/v2/models/no-such-model/ready",
                 "/v2/models/no-such-model/infer"):
        method = client.post if path.endswith("infer") else client.get
        response = method(path, json={"inputs": [_tensor()]})
        assert response.status_code == 404
        assert response.get_json() == {"error": "No model named 'no-such-model'."}


def test_metadata_of_an_unknown_version_is_a_404(client, lesson):
    response = client.get(f"/v2/models/{lesson['name']}/versions/9")
    assert response.status_code == 404 and "has no version 9" in response.get_json()["error"]
    assert client.get(f"/v2/models/{lesson['name']}/versions/9/ready").status_code == 404
