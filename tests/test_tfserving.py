"""TensorFlow Serving's REST API at /v1: the shapes of its documentation, its errors and codes."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from tests.conftest import LESSON_LAYERS
from tests.trained import (
    LESSON_COMPILE,
    compiled_model,
    lesson_data,
    trained_lesson,
    two_input_data,
)


@pytest.fixture(scope="module")
def mlp(app):
    """The lesson's model with versions 1 and 2 (trained on other data: other weights)."""
    return trained_lesson(app, versions=2)


@pytest.fixture(scope="module")
def two(two_inputs):
    return two_inputs


def native(client, model: dict, body: dict, version: int | None = None):
    """The native API's answer to the same inputs: what /v1 must agree with."""
    body = {**body, **({"version": version} if version else {})}
    response = client.post(f"/models/{model['id']}/predict", json=body)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["predictions"]


def v1(client, path: str, body=None):
    return client.post(f"/v1/models/{path}", json=body) if body is not None \
        else client.get(f"/v1/models/{path}")


def available(*versions: str) -> dict:
    return {"model_version_status": [
        {"version": v, "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        for v in versions]}


# -- model status and metadata ---------------------------------------------------------------

def test_status_lists_every_version_newest_first(client, mlp):
    response = v1(client, mlp["name"])
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == available("2", "1")


@pytest.mark.parametrize("version", ["1", "2"])
def test_status_of_one_version(client, mlp, version):
    assert v1(client, f"{mlp['name']}/versions/{version}").get_json() == available(version)


def dims(*sizes: str) -> dict:
    return {"dim": [{"size": size, "name": ""} for size in sizes], "unknown_rank": False}


def test_metadata_is_the_serving_default_signature_def(client, mlp):
    response = v1(client, f"{mlp['name']}/metadata")
    assert response.status_code == 200
    input_name, output_name = mlp["inputs"][0]["name"], mlp["outputs"][0]["name"]
    assert response.get_json() == {
        "model_spec": {"name": mlp["name"], "signature_name": "", "version": "2"},
        "metadata": {"signature_def": {"signature_def": {"serving_default": {
            "inputs": {input_name: {"dtype": "DT_FLOAT", "tensor_shape": dims("-1", "100"),
                                    "name": f"serving_default_{input_name}:0"}},
            "outputs": {output_name: {"dtype": "DT_FLOAT", "tensor_shape": dims("-1", "10"),
                                      "name": "StatefulPartitionedCall:0"}},
            "method_name": "tensorflow/serving/predict",
            "defaults": {},
        }}}},
    }
    by_version = v1(client, f"{mlp['name']}/versions/1/metadata").get_json()
    assert by_version["model_spec"]["version"] == "1"


def test_metadata_of_several_inputs_and_outputs(client, two):
    signature = v1(client, f"{two['name']}/metadata").get_json()[
        "metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert {name: info["tensor_shape"] for name, info in signature["inputs"].items()} == {
        "features": dims("-1", "4"), "extra": dims("-1", "3")}
    assert {name: info["name"] for name, info in signature["outputs"].items()} == {
        "label": "StatefulPartitionedCall:0", "score": "StatefulPartitionedCall:1"}


# -- predict -----------------------------------------------------------------------------------

def test_row_format_instances_give_predictions(client, mlp):
    x, _ = lesson_data(rows=3, seed=7)
    response = v1(client, f"{mlp['name']}:predict", {"instances": x.tolist()})
    assert response.status_code == 200, response.get_json()
    assert list(response.get_json()) == ["predictions"]
    predictions = np.array(response.get_json()["predictions"])
    assert predictions.shape == (3, 10)
    assert np.allclose(predictions, native(client, mlp, {"instances": x.tolist()}))


def test_columnar_inputs_give_outputs(client, mlp):
    x, _ = lesson_data(rows=3, seed=8)
    expected = native(client, mlp, {"instances": x.tolist()})
    for inputs in (x.tolist(), {mlp["inputs"][0]["name"]: x.tolist()}):
        response = v1(client, f"{mlp['name']}:predict", {"inputs": inputs})
        assert response.status_code == 200, response.get_json()
        assert list(response.get_json()) == ["outputs"]
        assert np.allclose(response.get_json()["outputs"], expected)


def test_a_version_in_the_path_is_the_version_that_answers(client, mlp):
    x, _ = lesson_data(rows=2, seed=9)
    body = {"instances": x.tolist()}
    one = v1(client, f"{mlp['name']}/versions/1:predict", body).get_json()["predictions"]
    two = v1(client, f"{mlp['name']}/versions/2:predict", body).get_json()["predictions"]
    assert np.allclose(one, native(client, mlp, body, version=1))
    assert np.allclose(two, native(client, mlp, body, version=2))
    assert not np.allclose(one, two)
    assert np.allclose(v1(client, f"{mlp['name']}:predict", body).get_json()["predictions"], two)


def test_several_inputs_and_outputs_in_both_formats(client, two):
    x, _ = two_input_data(rows=3, seed=10)
    columns = {name: array.tolist() for name, array in x.items()}
    expected = native(client, two, {"inputs": columns})

    rows = [{"features": f, "extra": e} for f, e in zip(columns["features"], columns["extra"],
                                                         strict=True)]
    predictions = v1(client, f"{two['name']}:predict", {"instances": rows}).get_json()[
        "predictions"]
    # Row format: one object per instance, keyed by output name.
    assert [set(row) for row in predictions] == [{"label", "score"}] * 3
    assert np.allclose([row["label"] for row in predictions], expected["label"])
    assert np.allclose([row["score"] for row in predictions], expected["score"])

    outputs = v1(client, f"{two['name']}:predict", {"inputs": columns}).get_json()["outputs"]
    assert set(outputs) == {"label", "score"}
    assert np.allclose(outputs["label"], expected["label"])
    assert np.allclose(outputs["score"], expected["score"])


@pytest.mark.parametrize("signature", ["serving_default", ""])
def test_the_default_signature_name_is_accepted(client, mlp, signature):
    body = {"signature_name": signature, "instances": [[0.5] * 100]}
    assert v1(client, f"{mlp['name']}:predict", body).status_code == 200


@pytest.mark.parametrize("content_type", [None, "application/x-www-form-urlencoded",
                                          "text/plain"])
def test_the_body_is_json_whatever_its_content_type_as_in_tf_serving(client, mlp,
                                                                     content_type):
    # requests.post(url, data=json.dumps(body)) sends no type, curl -d a form type.
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post(f"/v1/models/{mlp['name']}:predict", headers=headers,
                           data=orjson.dumps({"instances": [[0.5] * 100]}))
    assert response.status_code == 200, response.get_json()
    assert len(response.get_json()["predictions"]) == 1


# -- errors: {"error": "..."} with TF Serving's status codes -----------------------------------

ROW = [0.5] * 100
ERRORS = [
    # (id, method, path after /v1/models/ ({mlp}: the model's name), body, status, words)
    ("unknown model status", "GET", "nope", None, 404,
     "Could not find any versions of model nope"),
    ("unknown version status", "GET", "{mlp}/versions/9", None, 404,
     "Could not find version 9 of model {mlp}"),
    ("version 0", "GET", "{mlp}/versions/0", None, 404, "Could not find version 0"),
    ("unknown model metadata", "GET", "nope/metadata", None, 404,
     "Servable not found for request: Latest(nope)"),
    ("unknown model predict", "POST", "nope:predict", {"instances": [ROW]}, 404,
     "Servable not found for request: Latest(nope)"),
    ("unknown version predict", "POST", "{mlp}/versions/9:predict", {"instances": [ROW]}, 404,
     "Servable not found for request: Specific({mlp}, 9)"),
    ("version past int64", "POST", f"{{mlp}}/versions/{2**64}:predict", {"instances": [ROW]},
     400, "Failed to convert version"),
    ("unknown label", "POST", "{mlp}/labels/nope:predict", {"instances": [ROW]}, 400,
     "Unrecognized servable version label: nope"),
    ("unknown label status", "GET", "{mlp}/labels/nope", None, 400,
     "Unrecognized servable version label: nope"),
    ("wrong width", "POST", "{mlp}:predict", {"instances": [[0.5] * 99]}, 400,
     "expects (None, 100) float32, received (1, 99)"),
    ("ragged", "POST", "{mlp}:predict", {"instances": [ROW, [0.5] * 99]}, 400, "ragged"),
    ("strings", "POST", "{mlp}:predict", {"instances": [["a"] * 100]}, 400, "string"),
    ("instances not a list", "POST", "{mlp}:predict", {"instances": "abc"}, 400,
     "'instances' must be a JSON array"),
    ("empty instances", "POST", "{mlp}:predict", {"instances": []}, 400, "empty"),
    ("null instances", "POST", "{mlp}:predict", {"instances": None}, 400, "instances"),
    ("both formats", "POST", "{mlp}:predict", {"instances": [ROW], "inputs": [ROW]}, 400,
     "only one of 'inputs' or 'instances'"),
    ("neither format", "POST", "{mlp}:predict", {"signature_name": "serving_default"}, 400,
     "Missing 'inputs' or 'instances' key"),
    ("unknown input name", "POST", "{mlp}:predict", {"inputs": {"pixels": [ROW]}}, 400,
     "unknown input 'pixels'"),
    ("b64 instance", "POST", "{mlp}:predict", {"instances": [{"b64": "AAAA"}]}, 400,
     "instances[0] is a {\"b64\": ...} object"),
    ("b64 inputs", "POST", "{mlp}:predict", {"inputs": {"b64": "AAAA"}}, 400,
     "decodes only for string (DT_STRING) inputs"),
    ("unknown signature", "POST", "{mlp}:predict", {"signature_name": "foo",
                                                    "instances": [ROW]}, 400,
     'Serving signature name: "foo" not found in signature def'),
    ("signature not a string", "POST", "{mlp}:predict", {"signature_name": 100,
                                                         "instances": [ROW]}, 400,
     "'signature_name' key must be a string value"),
    ("body not JSON", "POST", "{mlp}:predict", "instances = [1, 2]", 400, "not valid JSON"),
    ("empty body", "POST", "{mlp}:predict", "", 400, "not valid JSON"),
    ("body an array", "POST", "{mlp}:predict", "[[0.5]]", 400, "not a JSON object"),
    ("classify", "POST", "{mlp}:classify", {"examples": [{"x": 1.0}]}, 400,
     "Expected classification signature method_name to be tensorflow/serving/classify. "
     "Was: tensorflow/serving/predict"),
    ("regress by version", "POST", "{mlp}/versions/1:regress", {"examples": [{"x": 1.0}]}, 400,
     "Expected regression signature method_name"),
    ("classify unknown model", "POST", "nope:classify", {"examples": []}, 404,
     "Servable not found"),
    ("GET on predict", "GET", "{mlp}:predict", None, 400,
     "Malformed request: GET /v1/models/{mlp}:predict"),
    ("POST on status", "POST", "{mlp}", {}, 400, "Malformed request: POST"),
    ("DELETE a model", "DELETE", "{mlp}", None, 400, "Malformed request: DELETE"),
    ("no model name", "GET", "", None, 400, "Malformed request"),
    ("version not a number", "GET", "{mlp}/versions/abc", None, 400, "Malformed request"),
    ("version and label", "POST", "{mlp}/versions/1/labels/x:predict", {}, 400,
     "Malformed request"),
    ("colon in a name", "POST", "a:b:predict", {}, 400, "Malformed request"),
]


@pytest.mark.parametrize("method, path, body, status, words", [case[1:] for case in ERRORS],
                         ids=[case[0] for case in ERRORS])
def test_errors_are_tf_serving_errors(client, mlp, method, path, body, status, words):
    url = "/v1/models/" + path.replace("{mlp}", mlp["name"])
    data = body if isinstance(body, str) else (None if body is None else orjson.dumps(body))
    response = client.open(url.rstrip("/"), method=method, data=data,
                           content_type="application/json" if data is not None else None)
    assert response.status_code == status, response.get_json()
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert list(body) == ["error"]
    assert words.replace("{mlp}", mlp["name"]) in body["error"]


def test_anything_else_under_v1_is_malformed(client):
    response = client.get("/v1/foo")
    assert response.status_code == 400
    assert response.get_json() == {"error": "Malformed request: GET /v1/foo"}


def test_a_model_without_a_trained_version_is_not_found(client, unique_name):
    compiled_model(client, unique_name, LESSON_COMPILE, layers=LESSON_LAYERS)
    status = v1(client, unique_name)
    assert status.status_code == 404
    assert status.get_json()["error"].startswith(
        f"Could not find any versions of model {unique_name}")
    predict = v1(client, f"{unique_name}:predict", {"instances": [ROW]})
    assert predict.status_code == 404
    assert "has no trained version yet" in predict.get_json()["error"]
