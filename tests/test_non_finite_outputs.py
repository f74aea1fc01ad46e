"""Predictions with NaN or infinity: /v1 and /v2 write NaN, Infinity and -Infinity as
TensorFlow Serving and Triton do; the native API keeps to strict JSON (null) and .npy."""

from __future__ import annotations

import io
import json
import uuid

import numpy as np
import pytest
from tritonclient.http import InferRequestedOutput

from tests.test_oip import infer, result_of
from tests.trained import compiled_model, train_version

# `total` adds the two inputs (overflowing float32 to an infinity), `nothing` multiplies that
# by zero (an infinity times zero is NaN). Zero inputs leave the weights as they started.
OVERFLOWING = {
    "type": "functional",
    "inputs": [{"name": "x", "shape": [2]}],
    "layers": [
        {"type": "Dense", "name": "total", "inputs": ["x"], "units": 1, "use_bias": False,
         "kernel_initializer": "ones"},
        {"type": "Dense", "name": "nothing", "inputs": ["total"], "units": 1,
         "use_bias": False, "kernel_initializer": "zeros"},
    ],
    "outputs": ["total", "nothing"],
}
BIG = 3e38  # finite in float32; two of them are not
X = np.array([[BIG, BIG], [-BIG, -BIG], [1.0, 2.5]], dtype="float32")
TOTAL = [[np.inf], [-np.inf], [3.5]]
NOTHING = [[np.nan], [np.nan], [0.0]]


@pytest.fixture(scope="module")
def overflowing(app):
    client = app.test_client()
    model = compiled_model(client, f"overflow-{uuid.uuid4().hex[:8]}", {"loss": "mse",
                           "optimizer": "sgd"}, **OVERFLOWING)
    zeros = np.zeros((4, 2), "float32")
    train_version(app, model["id"], zeros, {"total": np.zeros((4, 1), "float32"),
                                            "nothing": np.zeros((4, 1), "float32")})
    return model


def same(received, expected) -> bool:
    return np.array_equal(np.array(received, dtype="float64"), np.array(expected),
                          equal_nan=True)


def test_v1_rows_and_columns_write_the_tokens_tf_serving_writes(client, overflowing):
    path = f"/v1/models/{overflowing['name']}:predict"
    rows = client.post(path, json={"instances": X.tolist()})
    assert rows.status_code == 200, rows.get_json()
    assert b"Infinity" in rows.data and b"-Infinity" in rows.data and b"NaN" in rows.data
    predictions = json.loads(rows.data)["predictions"]  # as TF Serving's clients read it
    assert same([row["total"] for row in predictions], TOTAL)
    assert same([row["nothing"] for row in predictions], NOTHING)

    columns = client.post(path, json={"inputs": {"x": X.tolist()}})
    assert columns.status_code == 200, columns.get_json()
    outputs = json.loads(columns.data)["outputs"]
    assert same(outputs["total"], TOTAL) and same(outputs["nothing"], NOTHING)


def test_v2_json_outputs_read_back_through_tritonclient(client, overflowing):
    in_json = [InferRequestedOutput(name, binary_data=False) for name in ("total", "nothing")]
    response = infer(client, overflowing, {"x": X}, outputs=in_json)
    assert response.status_code == 200, response.get_json()
    assert b"Infinity" in response.data and b"NaN" in response.data
    result = result_of(response)
    assert same(result.as_numpy("total"), TOTAL)
    assert same(result.as_numpy("nothing"), NOTHING)
    binary = result_of(infer(client, overflowing, {"x": X}, binary=True))
    assert same(binary.as_numpy("total"), TOTAL)


def test_native_json_stays_strict_and_npy_keeps_the_values(client, overflowing):
    path = f"/models/{overflowing['id']}/predict"
    response = client.post(path, json={"instances": X.tolist()})
    assert response.status_code == 200, response.get_json()
    predictions = json.loads(response.data, parse_constant=pytest.fail)["predictions"]
    assert predictions["total"] == [[None], [None], [3.5]]
    assert predictions["nothing"] == [[None], [None], [0.0]]

    npz = client.post(path, json={"instances": X.tolist()},
                      headers={"Accept": "application/x-npz"})
    assert npz.status_code == 200
    with np.load(io.BytesIO(npz.data)) as arrays:
        assert same(arrays["total"], TOTAL) and same(arrays["nothing"], NOTHING)
