"""POST /models/import over HTTP: a clean `.keras` file becomes a trained model that predicts
what Keras predicts; a hostile one is refused with a 4xx and changes nothing at all."""

from __future__ import annotations

import copy
import dataclasses
import io
import uuid

import h5py
import keras
import numpy as np
import pytest
from keras.src.saving import serialization_lib

from tests.keras_files import clean_mlp, declaring, edited, members, pack, saved

JSON_PROBLEM = "application/problem+json"


def keras_globals() -> dict:
    """Keras' process-wide settings: what a hostile config would try to change."""
    config = keras.config
    return {"floatx": config.floatx(), "epsilon": config.epsilon(),
            "image_data_format": config.image_data_format(), "backend": config.backend(),
            "dtype_policy": config.dtype_policy().name, "max_epochs": config.max_epochs(),
            "max_steps_per_epoch": config.max_steps_per_epoch(),
            "flash_attention": config.is_flash_attention_enabled(),
            "traceback_filtering": config.is_traceback_filtering_enabled(),
            "safe_mode": serialization_lib.in_safe_mode()}


def post_file(client, data: bytes, name: str | None = None):
    form = {"file": (io.BytesIO(data), "model.keras")}
    if name is not None:
        form["name"] = name
    return client.post("/models/import", data=form, content_type="multipart/form-data")


def stored_state(client, config) -> tuple:
    """Every model row (by listing) and every file under the models folder."""
    listing = client.get("/models?limit=500").get_json()
    files = sorted(str(p.relative_to(config.data_dir)) for p in
                   (config.data_dir / "models").rglob("*"))
    return listing["total"], [item["id"] for item in listing["items"]], files


@pytest.fixture(scope="module")
def clean() -> bytes:
    return saved(clean_mlp())


@pytest.fixture
def canary(tmp_path):
    """A path every hostile payload tries to create (or read); it must never exist."""
    path = tmp_path / "canary"
    yield path
    assert not path.exists(), "a hostile file ran code"


# -- hostile files, each made from a clean one ------------------------------------------------

def _function(module: str, name: str) -> dict:
    return {"module": module, "class_name": "function", "config": name,
            "registered_name": "function"}


def _replace_layer(index: int, layer: dict):
    return lambda config: config["config"]["layers"].__setitem__(index, layer)


def _dense(config: dict) -> dict:
    return config["config"]["layers"][1]["config"]


def _without_compile(config: dict) -> dict:
    return {key: copy.deepcopy(value) for key, value in config.items()
            if key != "compile_config"}


def _bytecode_lambda(canary) -> dict:
    # A real Lambda, serialized by Keras: its function travels as marshalled bytecode.
    layer = keras.layers.Lambda(lambda x, path=str(canary): (open(path, "w").close(), x)[1])
    return keras.saving.serialize_keras_object(layer)


def _lambda_of(function: dict) -> dict:
    return {"module": "keras.layers", "class_name": "Lambda", "registered_name": None,
            "config": {"name": "lambda", "function": function, "arguments": {"value": "float16"},
                       "output_shape": None, "mask": None}}


def _lookup_reading(path: str, lookup: type = keras.layers.StringLookup) -> bytes:
    """A lookup layer whose vocabulary is a file to read (Keras reads a string as a path)."""
    dtype, vocabulary = ("string", ["a", "b"]) if lookup is keras.layers.StringLookup else (
        "int64", [1, 2])
    inputs = keras.Input((3,), dtype=dtype, name="tokens")
    model = keras.Model(inputs, lookup(vocabulary=vocabulary)(inputs), name="lookup")

    def read_file(config):
        for layer in config["config"]["layers"]:
            if layer["class_name"] == lookup.__name__:
                layer["config"]["vocabulary"] = path

    return edited(saved(model), read_file)


def _external_link_weights(clean: bytes, target: str) -> bytes:
    files = members(clean)
    buffer = io.BytesIO(files["model.weights.h5"])
    with h5py.File(buffer, "r+") as weights:
        del weights["layers/dense/vars/0"]
        weights["layers/dense/vars/0"] = h5py.ExternalLink(target, "/x")
    return pack({**files, "model.weights.h5": buffer.getvalue()})


HOSTILE = {
    "bytecode-lambda": (lambda clean, canary: edited(
        clean, _replace_layer(2, _bytecode_lambda(canary))), "'Lambda' is never accepted"),
    "module-os-initializer": (lambda clean, canary: edited(clean, lambda c: _dense(c).update(
        kernel_initializer={"module": "os", "class_name": "system", "registered_name": None,
                            "config": {"command": f"touch {canary}"}})), 'module "os"'),
    "module-os-layer": (lambda clean, canary: edited(clean, _replace_layer(2, {
        "module": "os", "class_name": "system", "registered_name": None,
        "config": {"command": f"touch {canary}"}})), 'from module "os"'),
    "set-floatx-lambda": (lambda clean, canary: edited(clean, _replace_layer(2, _lambda_of(
        _function("keras.config", "set_floatx")))), "'Lambda' is never accepted"),
    "set-floatx-activation": (lambda clean, canary: edited(clean, lambda c: _dense(c).update(
        activation=_function("keras.config", "set_floatx"))), "keras.config"),
    "unsafe-deserialization-activation": (lambda clean, canary: edited(
        clean, lambda c: _dense(c).update(activation=_function(
            "keras.config", "enable_unsafe_deserialization"))), "enable_unsafe_deserialization"),
    "unsafe-deserialization-loss": (lambda clean, canary: edited(
        clean, lambda c: c["compile_config"].update(loss=_function(
            "keras.config", "enable_unsafe_deserialization"))), "enable_unsafe_deserialization"),
    "custom-object": (lambda clean, canary: edited(clean, lambda c: c["config"]["layers"][1]
                                                   .update(registered_name="Custom>Dense")),
                      "registered"),
    "tfsm-layer": (lambda clean, canary: edited(clean, _replace_layer(2, {
        "module": "keras.layers", "class_name": "TFSMLayer", "registered_name": None,
        "config": {"name": "tfsm", "filepath": str(canary), "call_endpoint": "serve"}})),
        "'TFSMLayer' is never accepted"),
    "string-lookup-vocabulary-file": (lambda clean, canary: _lookup_reading("/etc/passwd"),
                                      "'vocabulary' expects a list"),
    "integer-lookup-vocabulary-file": (lambda clean, canary: _lookup_reading(
        str(canary), keras.layers.IntegerLookup), "'vocabulary' expects a list"),
    "torch-module-wrapper": (lambda clean, canary: edited(clean, _replace_layer(2, {
        "module": "keras.layers", "class_name": "TorchModuleWrapper", "registered_name": None,
        "config": {"name": "torch", "module": "<pickled torch module>"}})),
        "'TorchModuleWrapper' is never accepted"),
    "nested-model": (lambda clean, canary: edited(clean, lambda c: c["config"]["layers"]
                                                  .__setitem__(2, _without_compile(c))),
                     'a layer from module "keras"'),
    "dense-10**8-units": (lambda clean, canary: edited(clean, lambda c: _dense(c).update(
        units=10**8)), "'units' expects an integer from 1 to 65536; received 100000000"),
    "parameters-over-the-cap": (lambda clean, canary: edited(clean, lambda c: (
        c["config"]["layers"][0]["config"].update(batch_shape=[None, 65536]),
        _dense(c).update(units=65536))), "KERAS_SERVICE_MAX_PARAMS"),
    "weights-linking-a-file": (lambda clean, canary: _external_link_weights(
        clean, str(canary)), "a link to another object or file"),
    "dotdot-member": (lambda clean, canary: pack({**members(clean),
                                                   "../../canary": b"x"}), "a path"),
    "absolute-member": (lambda clean, canary: pack({**members(clean),
                                                     str(canary): b"x"}), "a path"),
    "unexpected-member": (lambda clean, canary: pack({**members(clean), "run.py": b"x"}),
                          "unexpected member 'run.py'"),
    "zip-bomb-declared": (lambda clean, canary: declaring(
        clean, "config.json", 3_000_000_000), "zip bomb"),
    "zip-bomb-deflated": (lambda clean, canary: pack(
        {**members(clean), "config.json": b" " * (64 * 1024**2)}, 8), "over the cap"),
}
STATUS = {"dotdot-member": 422}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_file_is_refused_and_changes_nothing(client, config, clean, canary, case):
    make, detail = HOSTILE[case]
    data = make(clean, canary)
    before, settings = stored_state(client, config), keras_globals()
    response = post_file(client, data, name=f"hostile-{uuid.uuid4().hex[:8]}")
    assert response.status_code == 422, response.get_json()
    assert response.content_type == JSON_PROBLEM
    assert detail in response.get_json()["detail"]
    assert "Traceback" not in response.get_data(as_text=True)
    assert stored_state(client, config) == before
    assert keras_globals() == settings


def test_a_legacy_h5_model_is_refused_unread(client, config, tmp_path, canary):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda x: x)])
    model.save(tmp_path / "model.h5")
    before = stored_state(client, config)
    response = post_file(client, (tmp_path / "model.h5").read_bytes())
    assert response.status_code == 415
    assert ".h5" in response.get_json()["detail"]
    assert stored_state(client, config) == before


@pytest.mark.parametrize("body, content_type, status, detail", [
    ({"file": (io.BytesIO(b""), "model.keras")}, "multipart/form-data", 400, "empty"),
    ({"file": (io.BytesIO(b"\x00garbage" * 100), "model.keras")}, "multipart/form-data", 415,
     "not a .keras file"),
    ({"name": "no-file"}, "multipart/form-data", 400, "no file"),
    ({"file": (io.BytesIO(b"PK"), "model.keras"), "tags": "x"}, "multipart/form-data", 400,
     "Unexpected text field(s) 'tags'"),
    ({"file": (io.BytesIO(b"PK"), "model.keras"), "name": "../x"}, "multipart/form-data", 422,
     "name: expected"),
    ({"model": (io.BytesIO(b"PK"), "model.keras")}, "multipart/form-data", 400,
     "field 'model'"),
    (b'{"file": "model.keras"}', "application/json", 415, "multipart/form-data"),
    (b"", None, 400, "no body"),
])
def test_requests_without_a_keras_file_are_refused(client, config, body, content_type, status,
                                                   detail):
    before = stored_state(client, config)
    response = client.post("/models/import", data=body, content_type=content_type)
    assert response.status_code == status, response.get_json()
    assert detail in response.get_json()["detail"]
    assert stored_state(client, config) == before


def test_a_file_over_the_size_cap_is_413(app, client, config, clean, monkeypatch):
    service = app.extensions["keras_service"].imports
    monkeypatch.setattr(service, "limits", dataclasses.replace(service.limits, max_bytes=4096))
    before = stored_state(client, config)
    response = post_file(client, clean)
    assert response.status_code == 413
    assert "KERAS_SERVICE_MAX_IMPORT_BYTES" in response.get_json()["detail"]
    assert stored_state(client, config) == before


def test_an_import_past_the_data_dir_cap_is_413_and_leaves_nothing(app, client, config, clean,
                                                                   monkeypatch):
    service = app.extensions["keras_service"].imports
    used = service.store.used_bytes()
    monkeypatch.setattr(service, "limits", dataclasses.replace(
        service.limits, max_data_dir_bytes=used + 100))
    before = stored_state(client, config)
    response = post_file(client, clean, name=f"full-{uuid.uuid4().hex[:8]}")
    assert response.status_code == 413
    assert "KERAS_SERVICE_MAX_DATA_DIR_BYTES" in response.get_json()["detail"]
    assert stored_state(client, config) == before


def test_a_worker_imports_one_file_at_a_time(app, client, clean):
    service = app.extensions["keras_service"].imports
    service._slot.acquire()
    try:
        response = post_file(client, clean, name=f"busy-{uuid.uuid4().hex[:8]}")
    finally:
        service._slot.release()
    assert response.status_code == 503 and response.headers["Retry-After"]


# -- clean files ------------------------------------------------------------------------------

def test_a_clean_file_imports_as_a_trained_model_that_predicts_like_keras(client, config):
    model = clean_mlp(name=f"clean-{uuid.uuid4().hex[:8]}")
    settings = keras_globals()
    response = post_file(client, saved(model))
    assert response.status_code == 201, response.get_json()
    imported = response.get_json()
    assert response.headers["Location"].endswith(f"/models/{imported['id']}")
    assert response.headers["ETag"]
    assert (imported["name"], imported["state"], imported["version"]) == (model.name,
                                                                          "trained", 1)
    assert imported["compile"] == {"loss": "categorical_crossentropy", "optimizer": "adam",
                                   "metrics": ["accuracy"]}
    assert [layer["type"] for layer in imported["layers"]] == ["Dense", "Dropout", "Dense"]
    assert imported["params"] == model.count_params()
    versions = client.get(f"/models/{imported['id']}/versions").get_json()["items"]
    assert [version["number"] for version in versions] == [1]

    x = np.random.default_rng(1).normal(size=(6, 4)).astype("float32")
    predicted = client.post(f"/models/{imported['id']}/predict", json={"instances": x.tolist()})
    assert predicted.status_code == 200
    np.testing.assert_allclose(predicted.get_json()["predictions"],
                               model.predict(x, verbose=0), rtol=1e-5, atol=1e-7)
    assert keras_globals() == settings
    assert not list((config.data_dir / "models" / imported["id"]).glob(".tmp-*"))

    again = post_file(client, saved(model))  # the file's name is taken now
    assert again.status_code == 409
    assert model.name in again.get_json()["detail"]


def test_a_functional_file_with_settings_off_the_allow_list_imports_uncompiled(client,
                                                                               unique_name):
    inputs = [keras.Input((4,), name="features"), keras.Input((2,), name="extra")]
    hidden = keras.layers.Dense(5, activation="tanh", name="hidden")(inputs[0])
    joined = keras.layers.Concatenate(name="joined")([hidden, inputs[1]])
    model = keras.Model(inputs, [keras.layers.Dense(1, name="score")(joined),
                                 keras.layers.Dense(2, activation="softmax", name="label")(joined)])
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.9)
    model.compile(loss="mse", optimizer=keras.optimizers.SGD(learning_rate=schedule))

    response = post_file(client, saved(model), name=unique_name)
    assert response.status_code == 201, response.get_json()
    imported = response.get_json()
    assert (imported["name"], imported["type"], imported["compile"]) == (unique_name,
                                                                         "functional", None)
    rng = np.random.default_rng(2)
    x = {"features": rng.normal(size=(3, 4)).astype("float32"),
         "extra": rng.normal(size=(3, 2)).astype("float32")}
    predicted = client.post(f"/models/{imported['id']}/predict",
                            json={"inputs": {k: v.tolist() for k, v in x.items()}})
    assert predicted.status_code == 200, predicted.get_json()
    expected = model.predict([x["features"], x["extra"]], verbose=0)
    outputs = predicted.get_json()["predictions"]
    np.testing.assert_allclose(outputs["score"], expected[0], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(outputs["label"], expected[1], rtol=1e-5, atol=1e-7)

    refused = client.post(f"/models/{imported['id']}/fit", json={"dataset": "0" * 32,
                                                                 "epochs": 1})
    assert refused.status_code == 409 and "compile" in refused.get_json()["detail"]
    compiled = client.post(f"/models/{imported['id']}/compile",
                           json={"loss": "mse", "optimizer": "adam"})
    assert compiled.status_code == 200, compiled.get_json()
    assert compiled.get_json()["state"] == "trained"


def test_an_answer_of_the_wrong_shape_from_the_import_process_imports_nothing(
        client, config, clean, monkeypatch):
    # Even a process a file had subverted can only answer JSON, and the answer is checked.
    monkeypatch.setattr("service.imports.service.run_isolated",
                        lambda *args, **kwargs: {"type": "Lambda", "described": {}})
    before = stored_state(client, config)
    response = post_file(client, clean, name=f"odd-{uuid.uuid4().hex[:8]}")
    assert response.status_code == 422
    assert "answered in a shape it never does" in response.get_json()["detail"]
    assert stored_state(client, config) == before
