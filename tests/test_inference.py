"""Predict and evaluate over HTTP: rows, columns, named inputs, several outputs, bad tensors."""

from __future__ import annotations

import dataclasses
import threading
import uuid

import numpy as np
import pytest

from service.inference import ModelCache, runtime
from tests.conftest import LESSON_LAYERS
from tests.trained import (
    LESSON_COMPILE,
    compiled_model,
    lesson_data,
    load_version_file,
    train_version,
    two_input_data,
)

JSON_PROBLEM = "application/problem+json"


keras_model = load_version_file


def predict(client, model: dict, body):
    return client.post(f"/models/{model['id']}/predict", json=body)


# -- predict -------------------------------------------------------------------------------

def test_predict_rows_gives_one_softmax_row_per_instance(client, config, lesson):
    x, _ = lesson_data(rows=3, seed=1)
    response = predict(client, lesson, {"instances": x.tolist()})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["model_version"] == 1
    predictions = np.array(body["predictions"])
    assert predictions.shape == (3, 10)
    assert np.allclose(predictions.sum(axis=1), 1.0, atol=1e-5)
    assert np.allclose(predictions, keras_model(config, lesson).predict(x, verbose=0), atol=1e-6)


def test_rows_columns_and_named_columns_agree(client, lesson):
    x, _ = lesson_data(rows=4, seed=2)
    input_name = lesson["inputs"][0]["name"]
    answers = [predict(client, lesson, body).get_json()["predictions"] for body in (
        {"instances": x.tolist()},
        {"inputs": x.tolist()},
        {"inputs": {input_name: x.tolist()}},
        {"instances": [{input_name: row} for row in x.tolist()]},
        {"instances": x.tolist(), "version": 1},
    )]
    for answer in answers[1:]:
        assert np.allclose(answer, answers[0])


def test_a_large_batch_is_answered_in_slices(client, lesson, monkeypatch):
    x, _ = lesson_data(rows=20, seed=3)
    whole = predict(client, lesson, {"inputs": x.tolist()}).get_json()["predictions"]
    monkeypatch.setattr(runtime, "PREDICT_CHUNK_ROWS", 7)
    sliced = predict(client, lesson, {"inputs": x.tolist()}).get_json()["predictions"]
    assert len(sliced) == 20
    assert np.allclose(sliced, whole, atol=1e-6)


def test_two_named_inputs_and_two_outputs(client, config, two_inputs):
    x, _ = two_input_data(rows=5, seed=4)
    response = predict(client, two_inputs, {"inputs": {k: v.tolist() for k, v in x.items()}})
    assert response.status_code == 200, response.get_json()
    predictions = response.get_json()["predictions"]
    assert set(predictions) == {"label", "score"}
    label, score = np.array(predictions["label"]), np.array(predictions["score"])
    assert label.shape == (5, 3) and score.shape == (5, 1)
    assert np.allclose(label.sum(axis=1), 1.0, atol=1e-5)
    expected = keras_model(config, two_inputs).predict(x, verbose=0)
    assert np.allclose(label, expected[0], atol=1e-6)
    assert np.allclose(score, expected[1], atol=1e-5)

    rows = [{"features": f, "extra": e} for f, e in zip(x["features"].tolist(),
                                                         x["extra"].tolist(), strict=True)]
    by_rows = predict(client, two_inputs, {"instances": rows}).get_json()["predictions"]
    assert np.allclose(by_rows["label"], label) and np.allclose(by_rows["score"], score)


def test_a_model_without_a_trained_version_is_a_409(client, unique_name):
    model = compiled_model(client, unique_name, LESSON_COMPILE, layers=LESSON_LAYERS)
    for route, body in (("predict", {"instances": [[0.0] * 100]}),
                        ("evaluate", {"x": [[0.0] * 100], "y": [[1.0] + [0.0] * 9]})):
        response = client.post(f"/models/{model['id']}/{route}", json=body)
        assert response.status_code == 409
        assert response.mimetype == JSON_PROBLEM
        assert "fit it first" in response.get_json()["detail"]


def test_the_cache_holds_each_served_version_once(app, client, lesson):
    predict(client, lesson, {"instances": [[0.0] * 100]})
    cache = app.extensions["keras_service"].inference.cache
    keys = [key for key in cache.keys() if key[0] == lesson["id"]]
    assert keys == [(lesson["id"], 1, keys[0][2], False)]


ROW = [0.5] * 100
ONE_HOT = [1.0] + [0.0] * 9

BAD_PREDICTS = [
    # (id, body or raw text, content type, status, words the detail must hold)
    ("wrong width", {"instances": [[0.5] * 99]}, None, 422,
     "input 'input_layer' expects (None, 100) float32, received (1, 99)"),
    ("wrong rank", {"instances": [[ROW]]}, None, 422, "received (1, 1, 100)"),
    ("one row unwrapped", {"instances": ROW}, None, 422, "wrap it in a list"),
    ("ragged", {"instances": [ROW, [0.5] * 99]}, None, 422, "ragged"),
    ("strings", {"instances": [["a"] * 100]}, None, 422, "a string ('a')"),
    ("null value", {"instances": [[None] * 100]}, None, 422, "null"),
    ("booleans", {"instances": [[True] * 100]}, None, 422, "boolean"),
    ("nested object", {"instances": [[{"a": 1}] * 100]}, None, 422, "an object"),
    ("infinity", '{"instances": [[1e400]]}', "application/json", 400, "infinity"),
    ("NaN", '{"instances": [[NaN]]}', "application/json", 400, "not valid JSON"),
    ("empty instances", {"instances": []}, None, 400, "'instances' is empty"),
    ("empty row", {"instances": [[]]}, None, 422, "empty"),
    ("instances null", {"instances": None}, None, 422, "instances"),
    ("instances a string", {"instances": "abc"}, None, 400,
     "'instances' must be a JSON array"),
    ("instances an object", {"instances": {"input_layer": [ROW]}}, None, 400,
     "received an object"),
    ("rows of mixed forms", {"instances": [{"input_layer": ROW}, ROW]}, None, 400,
     "Use one form for every row"),
    ("unknown input name", {"inputs": {"pixels": [ROW]}}, None, 400,
     "unknown input 'pixels'"),
    ("scalar inputs", {"inputs": 3}, None, 422, "must be a JSON array"),
    ("version 99", {"instances": [ROW], "version": 99}, None, 404, "has no version 99"),
    ("version a string", {"instances": [ROW], "version": "1"}, None, 422, "version"),
    ("version a fraction", {"instances": [ROW], "version": 1.5}, None, 422, "version"),
    ("version 0", {"instances": [ROW], "version": 0}, None, 422, "version"),
    ("both forms", {"instances": [ROW], "inputs": [ROW]}, None, 422, "exactly one of"),
    ("neither form", {}, None, 422, "exactly one of"),
    ("unknown field", {"instance": [ROW]}, None, 422, "instance"),
    ("body an array", "[[0.5]]", "application/json", 400, "Expected a JSON object"),
    ("body not JSON", "instances=1", "application/json", 400, "not valid JSON"),
    ("wrong content type", '{"instances": [[0.5]]}', "text/plain", 415, "application/json"),
    # numpy would read these as numbers: the direct conversion must leave them to the checks.
    ("a boolean among numbers", {"instances": [[0.5] * 99 + [True]]}, None, 422,
     "a boolean (true) at element [0][99]"),
    ("null among numbers", {"instances": [[0.5] * 99 + [None]]}, None, 422, "null"),
    ("a numeric string", {"instances": [[0.5] * 99 + ["1.5"]]}, None, 422, "a string ('1.5')"),
    ("past float32", {"instances": [[0.5] * 99 + [1e39]]}, None, 422,
     "outside the float32 range"),
    ("version in body and query", {"instances": [ROW], "version": 1}, "?version=2", 422,
     "the body asks for 1, the query for 2"),
]


@pytest.mark.parametrize("body, content_type, status, words",
                         [case[1:] for case in BAD_PREDICTS], ids=[c[0] for c in BAD_PREDICTS])
def test_bad_tensors_are_4xx_problems_that_say_what_was_wrong(client, lesson, body,
                                                             content_type, status, words):
    url = f"/models/{lesson['id']}/predict"
    if isinstance(content_type, str) and content_type.startswith("?"):  # a query, JSON body
        url, content_type = url + content_type, None
    response = (client.post(url, json=body) if content_type is None
                else client.post(url, data=body, content_type=content_type))
    assert response.status_code == status, response.get_json()
    assert response.mimetype == JSON_PROBLEM
    assert words in response.get_json()["detail"]


FEATURES, EXTRA = [[0.1] * 4] * 2, [[0.2] * 3] * 2
BAD_NAMED = [
    ("missing input", {"inputs": {"features": FEATURES}}, 400, "missing input 'extra'"),
    ("unknown and missing", {"inputs": {"features": FEATURES, "meta": EXTRA}}, 400,
     "unknown input 'meta'; missing input 'extra'"),
    ("columns without names", {"inputs": FEATURES}, 400, "has 2 inputs (features, extra)"),
    ("plain rows for two inputs", {"instances": FEATURES}, 400,
     "give each instance as an object"),
    ("row missing an input", {"instances": [{"features": FEATURES[0]}]}, 400,
     "instances[0]: missing input 'extra'"),
    ("rows disagree", {"inputs": {"features": FEATURES, "extra": EXTRA[:1]}}, 422,
     "features: 2, extra: 1"),
    ("second input too wide", {"inputs": {"features": FEATURES, "extra": [[0.2] * 4] * 2}},
     422, "input 'extra' expects (None, 3) float32, received (2, 4)"),
    ("ragged named input", {"inputs": {"features": [[0.1] * 4, [0.1]], "extra": EXTRA}}, 422,
     "Array 'inputs.features' is ragged"),
]


@pytest.mark.parametrize("body, status, words", [case[1:] for case in BAD_NAMED],
                         ids=[c[0] for c in BAD_NAMED])
def test_bad_named_inputs_are_4xx_problems(client, two_inputs, body, status, words):
    response = predict(client, two_inputs, body)
    assert response.status_code == status, response.get_json()
    assert response.mimetype == JSON_PROBLEM
    assert words in response.get_json()["detail"]


def test_too_many_elements_names_the_cap(app, client, lesson, monkeypatch):
    inference = app.extensions["keras_service"].inference
    monkeypatch.setattr(inference, "config",
                        dataclasses.replace(inference.config, max_inline_elements=250))
    response = predict(client, lesson, {"instances": [ROW] * 3})
    assert response.status_code == 422
    assert "KERAS_SERVICE_MAX_INLINE_ELEMENTS" in response.get_json()["detail"]
    assert predict(client, lesson, {"instances": [ROW] * 2}).status_code == 200


def test_a_corrupt_or_missing_file_is_a_clear_500_not_a_trace(app, client, config, caplog):
    model = compiled_model(client, f"corrupt-{uuid.uuid4().hex[:8]}", LESSON_COMPILE,
                           layers=LESSON_LAYERS)
    train_version(app, model["id"], *lesson_data(rows=8))
    path = config.data_dir / "models" / model["id"] / "v1.keras"
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    response = predict(client, model, {"instances": [ROW]})
    assert response.status_code == 500
    assert response.get_json()["type"].endswith("/artifact-corrupt")
    assert "checksum" in response.get_json()["detail"]
    assert "the registry says" in caplog.text
    path.unlink()
    for route in ("predict", "versions/1/artifact"):
        response = client.post(f"/models/{model['id']}/predict", json={"instances": [ROW]}) \
            if route == "predict" else client.get(f"/models/{model['id']}/{route}")
        assert response.status_code == 500
        assert "missing" in response.get_json()["detail"]


# -- evaluate ------------------------------------------------------------------------------

def test_evaluate_inline_arrays_as_keras_does(client, config, lesson):
    x, y = lesson_data(rows=20, seed=5)
    response = client.post(f"/models/{lesson['id']}/evaluate",
                           json={"x": x.tolist(), "y": y.tolist(), "batch_size": 8})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert set(body) == {"loss", "accuracy", "model_version"}
    expected = keras_model(config, lesson).evaluate(x, y, batch_size=8, return_dict=True,
                                                    verbose=0)
    assert body["loss"] == pytest.approx(expected["loss"], rel=1e-4)
    assert body["accuracy"] == pytest.approx(expected["accuracy"])
    assert body["model_version"] == 1


def test_evaluate_a_stored_dataset_by_id(client, lesson):
    x, y = lesson_data(rows=40, seed=6)
    upload = client.post("/datasets", json={"x": x.tolist(), "y": y.tolist()})
    assert upload.status_code == 201, upload.get_json()
    dataset = upload.get_json()["id"]
    stored = client.post(f"/models/{lesson['id']}/evaluate", json={"dataset": dataset})
    assert stored.status_code == 200, stored.get_json()
    inline = client.post(f"/models/{lesson['id']}/evaluate",
                         json={"x": x.tolist(), "y": y.tolist()})
    assert stored.get_json()["loss"] == pytest.approx(inline.get_json()["loss"], rel=1e-4)

    renamed = client.post("/datasets", json={"pixels": x.tolist(), "labels": y.tolist()})
    body = {"dataset": renamed.get_json()["id"], "x": "pixels", "y": "labels", "version": 1}
    response = client.post(f"/models/{lesson['id']}/evaluate", json=body)
    assert response.get_json()["loss"] == pytest.approx(inline.get_json()["loss"], rel=1e-4)


def test_evaluate_two_inputs_and_two_outputs(client, config, two_inputs):
    x, y = two_input_data(rows=12, seed=8)
    response = client.post(f"/models/{two_inputs['id']}/evaluate", json={
        "x": {k: v.tolist() for k, v in x.items()}, "y": {k: v.tolist() for k, v in y.items()}})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    expected = keras_model(config, two_inputs).evaluate(x, y, return_dict=True, verbose=0)
    assert set(body) == {*expected, "model_version"}
    assert body["loss"] == pytest.approx(expected["loss"], rel=1e-4)


@pytest.mark.parametrize("body, status, words", [
    ({"x": [ROW] * 3, "y": [ONE_HOT] * 2}, 422, "y has 2 rows; x has 3"),
    ({"x": [[0.5] * 99], "y": [ONE_HOT]}, 422, "expects (None, 100) float32, received (1, 99)"),
    ({"x": [ROW], "y": [[1.0, 0.0]]}, 422, "Keras could not evaluate"),
    ({"x": [ROW]}, 422, "required without 'dataset'"),
    ({"x": [ROW], "y": ["one"]}, 422, "Array 'y' holds a string"),
    ({"x": [ROW], "y": [ONE_HOT], "batch_size": 0}, 422, "batch_size"),
    ({"x": [ROW], "y": [ONE_HOT], "batch_size": 10**6}, 422, "KERAS_SERVICE_MAX_BATCH_SIZE"),
    ({"x": [ROW], "y": [ONE_HOT], "version": 7}, 404, "has no version 7"),
    ({"dataset": "0" * 32}, 404, "No dataset"),
    ({"dataset": "{dataset}", "x": "pixels"}, 422, "has no array 'pixels'"),
    ({"dataset": "{dataset}", "x": ["x", "y"]}, 400, "must name 1 dataset array"),
    ({"dataset": "{narrow}"}, 422, "dataset array 'x' is (2, 99) float32"),
], ids=["rows disagree", "x too narrow", "y wrong for the loss", "y missing", "y strings",
        "batch_size 0", "batch_size past the cap", "version 7", "unknown dataset",
        "unknown array", "two names for one input", "dataset too narrow"])
def test_bad_evaluate_requests_are_4xx_problems(client, lesson, body, status, words):
    wide = client.post("/datasets", json={"x": [ROW] * 2, "y": [ONE_HOT] * 2}).get_json()
    narrow = client.post("/datasets", json={"x": [[0.5] * 99] * 2, "y": [ONE_HOT] * 2})
    body = {key: value.format(dataset=wide["id"], narrow=narrow.get_json()["id"])
            if isinstance(value, str) else value for key, value in body.items()}
    response = client.post(f"/models/{lesson['id']}/evaluate", json=body)
    assert response.status_code == status, response.get_json()
    assert response.mimetype == JSON_PROBLEM
    assert words in response.get_json()["detail"]


# -- the cache ------------------------------------------------------------------------------

def test_cache_evicts_the_least_recently_used():
    cache = ModelCache(capacity=2)
    for key in ("a", "b", "a", "c"):
        cache.get(key, lambda key=key: key)
    assert cache.keys() == ["a", "c"]


def test_cache_loads_a_version_once_for_concurrent_requests():
    cache, calls, gate = ModelCache(capacity=2), [], threading.Event()

    def load():
        calls.append(1)
        gate.wait(5)
        return object()

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get("v1", load)))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    gate.set()
    for thread in threads:
        thread.join(10)
    assert len(calls) == 1 and len(results) == 8 and len({id(r) for r in results}) == 1


def test_a_failed_load_is_not_cached():
    cache = ModelCache(capacity=2)

    def fail():
        raise RuntimeError("disk")

    with pytest.raises(RuntimeError):
        cache.get("v1", fail)
    assert cache.get("v1", lambda: "loaded") == "loaded"
