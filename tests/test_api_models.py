"""HTTP stories through the app: the Keras lesson's model definition, step by step."""

from __future__ import annotations

import keras
import pytest

from tests.conftest import LESSON_LAYERS
from tests.files import compiled_file

JSON_PROBLEM = "application/problem+json"


def create(client, name, **body):
    response = client.post("/models", json={"name": name, **body})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def lesson_model(client, name):
    model = create(client, name)
    for layer in LESSON_LAYERS:
        response = client.post(f"/models/{model['id']}/layers", json=layer)
        assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_lesson_story_create_add_compile_summary_delete(client, config, unique_name):
    model = create(client, unique_name)
    assert model["state"] == "draft" and model["layers"] == [] and model["version"] is None
    assert len(model["id"]) == 32

    model = lesson_model(client, unique_name + "-l")
    assert [layer["type"] for layer in model["layers"]] == [
        "Dense", "Activation", "Dense", "Activation"]
    assert [layer["output_shape"] for layer in model["layers"]] == [
        [None, 100], [None, 100], [None, 10], [None, 10]]
    assert [layer["params"] for layer in model["layers"]] == [10100, 0, 1010, 0]
    assert model["params"] == 11110
    assert model["inputs"][0]["shape"] == [None, 100]
    assert model["outputs"][0]["shape"] == [None, 10]

    response = client.post(f"/models/{model['id']}/compile",
                           json={"loss": "categorical_crossentropy", "optimizer": "sgd"})
    assert response.status_code == 200, response.get_json()
    compiled = response.get_json()
    assert compiled["state"] == "compiled"
    assert compiled["compile"]["loss"] == "categorical_crossentropy"

    path = compiled_file(config.data_dir, model["id"])
    loaded = keras.saving.load_model(path)
    assert loaded.count_params() == 11110
    assert [layer.name for layer in loaded.layers] == [x["name"] for x in model["layers"]]
    assert [type(layer).__name__ for layer in loaded.layers] == [
        "Dense", "Activation", "Dense", "Activation"]

    summary = client.get(f"/models/{model['id']}/summary").get_json()
    assert summary["params"] == 11110 and len(summary["layers"]) == 4
    text = client.get(f"/models/{model['id']}/summary?format=text")
    assert text.content_type.startswith("text/plain")
    assert "Total params: 11,110" in text.get_data(as_text=True)

    assert client.delete(f"/models/{model['id']}").status_code == 204
    assert client.get(f"/models/{model['id']}").status_code == 404
    assert not path.parent.exists()


def test_adding_a_layer_after_compile_returns_to_draft(client, config, unique_name):
    model = lesson_model(client, unique_name)
    client.post(f"/models/{model['id']}/compile", json={"loss": "mse", "optimizer": "adam"})
    compiled = compiled_file(config.data_dir, model["id"])

    response = client.post(f"/models/{model['id']}/layers",
                           json={"type": "Dense", "units": 3})
    assert response.status_code == 201
    model = response.get_json()
    assert model["state"] == "draft" and model["compile"] is None
    assert model["layers"][-1]["output_shape"] == [None, 3]
    assert not compiled.exists()
    assert not list(compiled.parent.glob("compiled*.keras"))


def test_remove_a_layer_by_index(client, unique_name):
    model = lesson_model(client, unique_name)
    response = client.delete(f"/models/{model['id']}/layers/3")
    assert response.status_code == 200
    assert [layer["type"] for layer in response.get_json()["layers"]] == [
        "Dense", "Activation", "Dense"]
    response = client.delete(f"/models/{model['id']}/layers/7")
    assert response.status_code == 404
    assert "indexed 0 to 2" in response.get_json()["detail"]


def test_layers_route_lists_the_layers(client, unique_name):
    model = lesson_model(client, unique_name)
    body = client.get(f"/models/{model['id']}/layers").get_json()
    assert body["model_id"] == model["id"]
    assert [layer["index"] for layer in body["layers"]] == [0, 1, 2, 3]
    assert body["layers"][0]["config"]["units"] == 100


def test_functional_two_input_model_with_two_outputs(client, config, unique_name):
    model = create(client, unique_name, type="functional", inputs=[
        {"name": "image_features", "shape": [32]},
        {"name": "metadata", "shape": [8]},
    ], layers=[
        {"type": "Dense", "name": "a", "inputs": ["image_features"], "units": 16},
        {"type": "Dense", "name": "b", "inputs": ["metadata"], "units": 16},
        {"type": "Add", "name": "residual", "inputs": ["a", "b"]},
        {"type": "Concatenate", "name": "joined", "inputs": ["residual", "metadata"]},
        {"type": "Dense", "name": "label", "inputs": ["joined"], "units": 3,
         "activation": "softmax"},
        {"type": "Dense", "name": "score", "inputs": ["joined"], "units": 1},
    ], outputs=["label", "score"])
    assert [o["name"] for o in model["outputs"]] == ["label", "score"]
    assert [i["shape"] for i in model["inputs"]] == [[None, 32], [None, 8]]
    response = client.post(f"/models/{model['id']}/compile", json={
        "loss": {"label": "categorical_crossentropy", "score": "mse"},
        "optimizer": {"type": "adam", "learning_rate": 0.001},
        "metrics": {"label": ["accuracy"]}})
    assert response.status_code == 200, response.get_json()
    loaded = keras.saving.load_model(compiled_file(config.data_dir, model["id"]))
    assert loaded.count_params() == model["params"]
    assert len(loaded.outputs) == 2


def test_functional_layers_cannot_be_added_one_by_one(client, unique_name):
    model = create(client, unique_name, type="functional",
                   inputs=[{"name": "x", "shape": [4]}],
                   layers=[{"type": "Dense", "name": "d", "inputs": ["x"], "units": 2}],
                   outputs=["d"])
    response = client.post(f"/models/{model['id']}/layers", json={"type": "Dense", "units": 1})
    assert response.status_code == 409
    assert "functional" in response.get_json()["detail"]


def test_compiling_a_model_without_input_shape_says_how_to_fix_it(client, unique_name):
    model = create(client, unique_name, layers=[{"type": "Dense", "units": 4}])
    assert model["layers"][0]["output_shape"] is None
    response = client.post(f"/models/{model['id']}/compile",
                           json={"loss": "mse", "optimizer": "sgd"})
    assert response.status_code == 422
    assert "input_dim" in response.get_json()["detail"]
    assert client.get(f"/models/{model['id']}/summary?format=text").status_code == 409


def test_rename_tag_and_name_conflicts(client, unique_name):
    first = create(client, unique_name)
    second = create(client, unique_name + "-2")
    response = client.patch(f"/models/{first['id']}",
                            json={"name": unique_name + "-renamed", "tags": ["mnist"]})
    assert response.status_code == 200
    assert response.get_json()["tags"] == ["mnist"]
    response = client.patch(f"/models/{second['id']}", json={"name": unique_name + "-renamed"})
    assert response.status_code == 409
    assert client.post("/models", json={"name": unique_name + "-2"}).status_code == 409


def test_if_match_guards_against_lost_updates(client, unique_name):
    model = create(client, unique_name)
    etag = client.get(f"/models/{model['id']}").headers["ETag"]
    assert client.patch(f"/models/{model['id']}", json={"tags": ["a"]},
                        headers={"If-Match": etag}).status_code == 200
    stale = client.patch(f"/models/{model['id']}", json={"tags": ["b"]},
                         headers={"If-Match": etag})
    assert stale.status_code == 412
    assert client.get(f"/models/{model['id']}").get_json()["tags"] == ["a"]


def test_list_is_paginated_and_filtered(client, unique_name):
    for suffix in "abc":
        create(client, f"{unique_name}-{suffix}")
    page = client.get("/models?limit=2&offset=0").get_json()
    assert len(page["items"]) == 2 and page["total"] >= 3 and page["limit"] == 2
    named = client.get(f"/models?name={unique_name}-b").get_json()
    assert [m["name"] for m in named["items"]] == [f"{unique_name}-b"]
    assert client.get("/models?limit=0").status_code == 422
    assert client.get("/models?state=flying").status_code == 422


def test_catalog_lists_layers_and_training_choices(client):
    catalog = client.get("/catalog").get_json()
    assert len(catalog["layers"]) >= 40
    assert "units" in catalog["layers"]["Dense"]["arguments"]
    for forbidden in ("Lambda", "TFSMLayer", "TorchModuleWrapper"):
        assert forbidden not in catalog["layers"]
    for key in ("losses", "optimizers", "metrics", "activations"):
        assert catalog[key], key
    assert "categorical_crossentropy" in catalog["losses"]
    assert "sgd" in catalog["optimizers"]


def test_health_and_readiness(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz").get_json()
    assert ready["status"] == "ready" and all(ready["checks"].values())


@pytest.mark.parametrize(("down", "check", "named"), [
    ("database.ping", "registry", "registry"),
    ("store.is_writable", "artifact_store", "artifact store"),
])
def test_both_readiness_probes_answer_503_naming_what_is_down(app, client, monkeypatch, down,
                                                              check, named):
    owner, method = down.split(".")
    monkeypatch.setattr(getattr(app.extensions["keras_service"], owner), method, lambda: False)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["status"] == "unavailable"
    assert [name for name, up in response.get_json()["checks"].items() if not up] == [check]
    response = client.get("/v2/health/ready")
    assert (response.status_code, response.get_json()) == (
        503, {"ready": False, "error": f"Unavailable: {named}."})


# -- bad input: a 4xx that explains, and the model exactly as it was ------------------------

BAD_LAYERS = [
    ({"type": "Dense", "units": -5}, 422, "units"),
    ({"type": "Dense", "units": "ten"}, 422, "units"),
    ({"type": "Dense", "units": 10.5}, 422, "units"),
    ({"type": "Dense", "units": True}, 422, "units"),
    ({"type": "Dense", "units": 2**62}, 422, "units"),
    ({"type": "Dense", "units": 10, "activation": "os.system"}, 422, "activation"),
    ({"type": "Dense", "units": 10, "kernel_initializer": {"type": "Nope"}}, 422,
     "kernel_initializer"),
    ({"type": "Dense", "units": 10, "kernel_regularizer": {"type": "l2", "l2": -1}}, 422,
     "kernel_regularizer"),
    ({"type": "Dense", "units": 10, "unitz": 3}, 422, "unitz"),
    ({"type": "Dense", "units": 10, "input_dim": 5}, 422, "input_dim"),
    ({"type": "Lambda", "function": "lambda x: x"}, 422, "Lambda"),
    ({"type": "TFSMLayer", "filepath": "/tmp/model"}, 422, "TFSMLayer"),
    ({"type": "TorchModuleWrapper"}, 422, "TorchModuleWrapper"),
    ({"type": "Dense", "units": 10, "module": "os"}, 422, "module"),
    ({"type": "Dense", "units": 10, "registered_name": "evil>Thing"}, 422, "registered_name"),
    ({"type": "Conv2D", "filters": 4, "kernel_size": 3}, 422, "Conv2D"),
    ({"type": "RepeatVector", "n": 2**62}, 422, "n"),
    ({"type": "Dropout", "rate": 1.5}, 422, "rate"),
    ({"type": "Dropout", "rate": 1e308}, 422, "rate"),
    ({"type": "Reshape", "target_shape": [7, 7]}, 422, "Reshape"),
    ({"type": "Dense", "units": 10, "kernel_constraint": "os.remove"}, 422, "kernel_constraint"),
    ({"type": "Bidirectional", "layer": {"type": "Dense", "units": 3}}, 422, "layer"),
    ({"type": "Activation", "activation": {"type": "relu", "module": "os"}}, 422, "activation"),
    ({"type": "Dense"}, 422, "units"),
    ({"units": 10}, 422, "type"),
    ({"type": 7}, 422, "type"),
    ({"type": "Dense", "units": 10, "name": "../../etc"}, 422, "name"),
    ({"type": "Dense", "units": 10, "inputs": ["x"]}, 422, "inputs"),
    ({"type": "Embedding", "input_dim": 10, "output_dim": 2**40}, 422, "output_dim"),
    ({"type": "Dense", "units": 10, "dtype": "object"}, 422, "dtype"),
]


@pytest.fixture(scope="module")
def victim(app):
    client = app.test_client()
    model = lesson_model(client, "victim-of-bad-payloads")
    return model["id"]


def _snapshot(client, model_id):
    response = client.get(f"/models/{model_id}")
    return response.get_json(), response.headers["ETag"]


@pytest.mark.parametrize(("layer", "status", "mentions"), BAD_LAYERS,
                         ids=[str(i) for i in range(len(BAD_LAYERS))])
def test_bad_layer_is_refused_and_the_model_is_unchanged(client, victim, layer, status,
                                                          mentions):
    before = _snapshot(client, victim)
    response = client.post(f"/models/{victim}/layers", json=layer)
    assert response.status_code == status, response.get_json()
    assert response.content_type == JSON_PROBLEM
    problem = response.get_json()
    assert mentions in problem["detail"] or any(
        mentions in (e.get("path", "") + e.get("message", "")) for e in problem.get("errors", []))
    assert "Traceback" not in response.get_data(as_text=True)
    assert _snapshot(client, victim) == before


BAD_REQUESTS = [
    ("post", "/models/{id}/layers", {"data": "{not json", "content_type": "application/json"},
     400),
    ("post", "/models/{id}/layers", {"data": "[]", "content_type": "application/json"}, 400),
    ("post", "/models/{id}/layers", {"data": "type=Dense"}, 415),
    ("post", "/models/{id}/layers", {"data": '{"type": "Dense"}', "content_type": "text/plain"},
     415),
    ("post", "/models/{id}/layers", {"data": "[" * 100 + "]" * 100,
                                     "content_type": "application/json"}, 400),
    ("post", "/models/{id}/layers", {"data": '{"a":' * 40 + "1" + "}" * 40,
                                     "content_type": "application/json"}, 400),
    ("post", "/models/{id}/layers", {"data": b"\xff\xfe", "content_type": "application/json"},
     400),
    ("post", "/models/{id}/layers", {"data": "", "content_type": "application/json"}, 400),
    ("post", "/models/{id}/layers", {"data": '{"type":"Dense","units":' + "9" * 2_000_000 + "}",
                                     "content_type": "application/json"}, 413),
    ("post", "/models/{id}/compile", {"json": {"loss": "nope", "optimizer": "sgd"}}, 422),
    ("post", "/models/{id}/compile", {"json": {"loss": "mse", "optimizer": "nope"}}, 422),
    ("post", "/models/{id}/compile", {"json": {"loss": "mse"}}, 422),
    ("post", "/models/{id}/compile", {"json": {"loss": "mse", "optimizer": {
        "type": "adam", "learning_rate": -1}}}, 422),
    ("post", "/models/{id}/compile", {"json": {"loss": "mse", "optimizer": "sgd",
                                               "metrics": ["nope"]}}, 422),
    ("post", "/models/{id}/compile", {"json": {"loss": {"nope_output": "mse"},
                                               "optimizer": "sgd"}}, 422),
    ("patch", "/models/{id}", {"json": {"name": "bad name with spaces"}}, 422),
    ("patch", "/models/{id}", {"json": {}}, 422),
    ("patch", "/models/{id}", {"json": {"tags": "not-a-list"}}, 422),
    ("patch", "/models/{id}", {"json": {"id": "0" * 32}}, 422),
    ("delete", "/models/{id}/layers/99", {}, 404),
    ("delete", "/models/{id}/layers/-1", {}, 404),
    ("get", "/models/{id}/summary?format=xml", {}, 422),
    ("put", "/models/{id}", {"json": {}}, 405),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "status"), BAD_REQUESTS,
                         ids=[str(i) for i in range(len(BAD_REQUESTS))])
def test_bad_request_is_refused_and_the_model_is_unchanged(client, victim, method, path,
                                                            kwargs, status):
    before = _snapshot(client, victim)
    response = getattr(client, method)(path.format(id=victim), **kwargs)
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.content_type == JSON_PROBLEM
    assert response.get_json()["detail"]
    assert _snapshot(client, victim) == before


@pytest.mark.parametrize("body", [
    {"name": "x y"},
    {"name": ""},
    {"name": "ok", "type": "recurrent"},
    {"name": "ok", "type": "functional"},
    {"name": "ok", "inputs": [{"name": "a", "shape": [3]}]},
    {"name": "ok", "layers": "Dense"},
    {"name": "ok", "layers": [{"type": "Dense", "units": 60000, "input_dim": 1000}]},
    {"name": "ok", "layers": [{"type": "Dense", "units": 4, "input_dim": 3},
                              {"type": "Conv2D", "filters": 2, "kernel_size": 3}]},
    {"name": "ok", "type": "functional", "inputs": [{"name": "a", "shape": [3]}],
     "layers": [{"type": "Dense", "name": "d", "inputs": ["ghost"], "units": 1}],
     "outputs": ["d"]},
    {"name": "ok", "type": "functional", "inputs": [{"name": "a", "shape": [3]}],
     "layers": [{"type": "Dense", "name": "d", "inputs": ["e"], "units": 3},
                {"type": "Dense", "name": "e", "inputs": ["d"], "units": 3}],
     "outputs": ["e"]},
    {"name": "ok", "type": "functional",
     "inputs": [{"name": "a", "shape": [3]}, {"name": "unused", "shape": [3]}],
     "layers": [{"type": "Dense", "name": "d", "inputs": ["a"], "units": 1}], "outputs": ["d"]},
    {"name": "ok", "type": "functional",
     "inputs": [{"name": "a", "shape": [3]}, {"name": "b", "shape": [4]}],
     "layers": [{"type": "Add", "name": "sum", "inputs": ["a", "b"]}], "outputs": ["sum"]},
])
def test_bad_model_is_refused_and_nothing_is_created(client, body):
    before = client.get("/models?limit=500").get_json()["total"]
    response = client.post("/models", json=body)
    assert response.status_code in (400, 422), response.get_json()
    assert response.content_type == JSON_PROBLEM
    assert response.get_json()["detail"]
    assert client.get("/models?limit=500").get_json()["total"] == before


@pytest.mark.parametrize("path", ["/models/..", "/models/..%2f..%2fetc", "/models/%2e%2e",
                                  "/models/" + "0" * 32, "/models/abc/layers",
                                  "/models/..%2F/summary"])
def test_unknown_and_path_like_ids_are_404(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response.content_type == JSON_PROBLEM


def test_compiling_a_trained_or_unknown_model_is_refused(client):
    response = client.post("/models/" + "f" * 32 + "/compile",
                           json={"loss": "mse", "optimizer": "sgd"})
    assert response.status_code == 404
