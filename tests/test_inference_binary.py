"""Binary predict: .npy and .npz bodies and answers, and the bad ones, each a 4xx."""

from __future__ import annotations

import io
import pickle
import zipfile

import numpy as np
import pytest
from flask import request

from service.api import inference as inference_api
from service.inference.payloads import ANSWER_TYPES, JSON
from tests.test_inference import JSON_PROBLEM, keras_model
from tests.trained import (
    lesson_data,
    two_input_data,
)

NPY, NPZ = "application/x-npy", "application/x-npz"


def npy(array: np.ndarray, **save) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, **save)
    return buffer.getvalue()


def npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def load_npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def post(client, model, data, content_type, accept=None, query=""):
    headers = {"Accept": accept} if accept else {}
    return client.post(f"/models/{model['id']}/predict{query}", data=data,
                       content_type=content_type, headers=headers)


def test_npy_in_npy_out_matches_keras(client, config, lesson):
    x, _ = lesson_data(rows=5, seed=11)
    response = post(client, lesson, npy(x), NPY, accept=NPY, query="?version=1")
    assert response.status_code == 200, response.get_json()
    assert response.mimetype == NPY
    assert response.headers["X-Model-Version"] == "1"
    y = load_npy(response.data)
    assert y.shape == (5, 10) and y.dtype == np.float32
    assert np.allclose(y, keras_model(config, lesson).predict(x, verbose=0), atol=1e-6)


def test_binary_and_json_bodies_and_answers_agree(client, lesson):
    x, _ = lesson_data(rows=4, seed=12)
    by_json = client.post(f"/models/{lesson['id']}/predict", json={"instances": x.tolist()})
    assert by_json.headers["X-Model-Version"] == "1"
    expected = np.array(by_json.get_json()["predictions"])
    as_npy = load_npy(client.post(f"/models/{lesson['id']}/predict",
                                  json={"instances": x.tolist()},
                                  headers={"Accept": NPY}).data)
    from_npy = np.array(post(client, lesson, npy(x), NPY).get_json()["predictions"])
    # float64 and integer arrays are cast to the input's float32, as JSON numbers are.
    from_float64 = load_npy(post(client, lesson, npy(x.astype(np.float64)), NPY, NPY).data)
    from_npz = load_npz_member(post(client, lesson, npz(input_layer=x), NPZ, NPZ).data,
                               lesson["outputs"][0]["name"])
    for answer in (as_npy, from_npy, from_float64, from_npz):
        assert np.allclose(answer, expected, atol=1e-6)
    ints = post(client, lesson, npy(np.ones((2, 100), dtype=np.int32)), NPY)
    assert ints.status_code == 200, ints.get_json()


def load_npz_member(data: bytes, name: str) -> np.ndarray:
    with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
        return arrays[name]


def test_npz_in_npz_out_for_two_inputs_and_two_outputs(client, config, two_inputs):
    x, _ = two_input_data(rows=6, seed=13)
    response = post(client, two_inputs, npz(**x), NPZ, accept=NPZ)
    assert response.status_code == 200, response.get_json()
    assert response.mimetype == NPZ and response.headers["X-Model-Version"] == "1"
    with np.load(io.BytesIO(response.data), allow_pickle=False) as answer:
        assert sorted(answer.files) == ["label", "score"]
        label, score = answer["label"], answer["score"]
    expected = keras_model(config, two_inputs).predict(x, verbose=0)
    assert np.allclose(label, expected[0], atol=1e-6)
    assert np.allclose(score, expected[1], atol=1e-5)
    as_json = post(client, two_inputs, npz(**x), NPZ).get_json()["predictions"]
    assert np.allclose(as_json["label"], label, atol=1e-6)


def _pickled_npy() -> bytes:
    return npy(np.array([{"a": 1}], dtype=object), allow_pickle=True)


def _raw_pickle() -> bytes:
    return pickle.dumps(np.zeros((1, 100)))


def _npz_with(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


ROWS = np.full((2, 100), 0.5, dtype=np.float32)
NAN = ROWS.copy()
NAN[1, 7] = np.nan
INF = ROWS.copy()
INF[0, 0] = np.inf
FEATURES, EXTRA = np.zeros((2, 4), np.float32), np.zeros((2, 3), np.float32)

BAD_BINARY = [
    # (id, which model, body, content type, accept, query, status, words in the detail)
    ("pickled object npy", "lesson", _pickled_npy(), NPY, None, "", 422, "Pickled data"),
    ("a pickle, not npy", "lesson", _raw_pickle(), NPY, None, "", 422, "not a .npy file"),
    ("truncated npy", "lesson", npy(ROWS)[:-8], NPY, None, "", 422, "truncated"),
    ("bytes after the data", "lesson", npy(ROWS) + b"\0" * 8, NPY, None, "", 422,
     "bytes after its data"),
    ("NaN in npy", "lesson", npy(NAN), NPY, None, "", 422, "NaN or infinity"),
    ("infinity in npy", "lesson", npy(INF), NPY, None, "", 422, "NaN or infinity"),
    ("wrong width", "lesson", npy(np.zeros((3, 99), np.float32)), NPY, None, "", 422,
     "input 'input_layer' expects (None, 100) float32, received (3, 99)"),
    ("one row unwrapped", "lesson", npy(np.zeros(100, np.float32)), NPY, None, "", 422,
     "wrap it in a list"),
    ("empty array", "lesson", npy(np.zeros((0, 100), np.float32)), NPY, None, "", 422,
     "empty"),
    ("a scalar", "lesson", npy(np.float32(1.0)), NPY, None, "", 422, "zero-dimensional"),
    ("strings", "lesson", npy(np.array([["a"] * 100])), NPY, None, "", 422, "dtype"),
    ("complex numbers", "lesson", npy(np.zeros((1, 100), np.complex64)), NPY, None, "", 422,
     "complex64"),
    ("big-endian", "lesson", npy(np.zeros((1, 100), ">f4")), NPY, None, "", 422,
     "big-endian"),
    ("Fortran order", "lesson", npy(np.asfortranarray(np.zeros((2, 100), np.float32))), NPY,
     None, "", 422, "Fortran order"),
    ("empty body", "lesson", b"", NPY, None, "", 400, "no body"),
    ("wrong content type", "lesson", npy(ROWS), "application/octet-stream", None, "", 415,
     "application/x-npy"),
    ("csv", "lesson", b"0.5,0.5", "text/csv", None, "", 415, "Content-Type"),
    ("version not a number", "lesson", npy(ROWS), NPY, None, "?version=latest", 422,
     "query.version"),
    ("version 0", "lesson", npy(ROWS), NPY, None, "?version=0", 422, "query.version"),
    ("version 9", "lesson", npy(ROWS), NPY, None, "?version=9", 404, "has no version 9"),
    ("npz not a zip", "lesson", b"PK\x03\x04 nothing", NPZ, None, "", 422, "zip"),
    ("npz member not npy", "lesson", _npz_with({"input_layer.txt": b"1"}), NPZ, None, "",
     422, "not a .npy file"),
    ("npz member a path", "lesson", _npz_with({"../input_layer.npy": npy(ROWS)}), NPZ, None,
     "", 422, "a path"),
    ("npz unknown member", "lesson", npz(pixels=ROWS), NPZ, None, "", 400,
     "unknown input 'pixels'"),
    ("npz missing an input", "two", npz(features=FEATURES), NPZ, None, "", 400,
     "missing input 'extra'"),
    ("npz rows disagree", "two", npz(features=FEATURES, extra=EXTRA[:1]), NPZ, None, "", 422,
     "features: 2, extra: 1"),
    ("npz pickled member", "two", _npz_with({"features.npy": _pickled_npy(),
                                             "extra.npy": npy(EXTRA)}), NPZ, None, "", 422,
     "Pickled data"),
    ("npy for two inputs", "two", npy(FEATURES), NPY, None, "", 400, "one .npz"),
    ("npy answer for two outputs", "two", npz(features=FEATURES, extra=EXTRA), NPZ, NPY, "",
     406, "Accept: application/x-npz"),
]


@pytest.mark.parametrize("which, body, content_type, accept, query, status, words",
                         [case[1:] for case in BAD_BINARY], ids=[c[0] for c in BAD_BINARY])
def test_bad_binary_tensors_are_4xx_problems(client, lesson, two_inputs, which, body,
                                             content_type, accept, query, status, words):
    model = lesson if which == "lesson" else two_inputs
    response = post(client, model, body, content_type, accept, query)
    assert response.status_code == status, response.get_json()
    assert response.mimetype == JSON_PROBLEM
    assert words in response.get_json()["detail"]


def test_too_many_numbers_in_npy_names_the_cap(app, client, lesson, monkeypatch):
    import dataclasses

    inference = app.extensions["keras_service"].inference
    monkeypatch.setattr(inference, "config",
                        dataclasses.replace(inference.config, max_inline_elements=250))
    response = post(client, lesson, npy(np.zeros((3, 100), np.float32)), NPY)
    assert response.status_code == 422
    assert "KERAS_SERVICE_MAX_INLINE_ELEMENTS" in response.get_json()["detail"]
    response = post(client, lesson, npz(input_layer=np.zeros((3, 100), np.float32)), NPZ)
    assert response.status_code == 422
    assert "KERAS_SERVICE_MAX_INLINE_ELEMENTS" in response.get_json()["detail"]


@pytest.mark.parametrize("query, accept", [
    ("", None), ("", ""), ("", "*/*"), ("", "application/json"), ("", "application/*"),
    ("", NPY), ("", f"{NPY};q=0.5, application/json"), ("", "text/html, */*;q=0.1"),
    ("", f"{NPZ}, {NPY};q=0.9"), ("", "text/html"), ("?version=2", None), ("?a=1", None),
    ("?version=", None),
])
def test_the_shortcuts_for_query_and_accept_read_them_as_werkzeug_does(app, query, accept):
    headers = {} if accept is None else {"Accept": accept}
    with app.test_request_context(f"/models/x/predict{query}", method="POST", headers=headers):
        assert inference_api._query_version() == request.args.get("version")
        assert inference_api._answer_type() == (
            request.accept_mimetypes.best_match(ANSWER_TYPES) or (JSON if not accept else None))
