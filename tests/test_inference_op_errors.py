"""Inputs that pass the signature's checks but that TensorFlow refuses are a 4xx, on every
protocol, with TensorFlow's reason and nothing of its graph or source."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from tests.trained import compiled_model, train_version

FREE_SIZE_CONV = {"layers": [
    {"type": "Conv2D", "filters": 2, "kernel_size": 3, "input_shape": [None, None, 1]},
    {"type": "GlobalAveragePooling2D"},
    {"type": "Dense", "units": 2},
]}
TOO_SMALL = [[[[0.5]]]]  # one 1x1 image: below the 3x3 kernel


@pytest.fixture(scope="module")
def conv(app):
    model = compiled_model(app.test_client(), f"conv-{uuid.uuid4().hex[:8]}",
                           {"loss": "mse", "optimizer": "sgd"}, **FREE_SIZE_CONV)
    train_version(app, model["id"], np.zeros((4, 5, 5, 1), "float32"),
                  np.zeros((4, 2), "float32"))
    return model


def test_an_image_smaller_than_the_kernel_is_422_with_tensorflows_reason(client, conv):
    response = client.post(f"/models/{conv['id']}/predict", json={"instances": TOO_SMALL})
    assert response.status_code == 422
    detail = response.get_json()["detail"]
    assert detail.startswith("The model cannot compute on this input: Computed output size "
                             "would be negative")
    assert "File " not in detail and "node" not in detail and ".py" not in detail
    fits = client.post(f"/models/{conv['id']}/predict",
                       json={"instances": np.zeros((1, 5, 5, 1)).tolist()})
    assert fits.status_code == 200  # the worker and the model are fine afterwards


def test_the_serving_protocols_answer_it_as_a_4xx_too(client, conv):
    v1 = client.post(f"/v1/models/{conv['name']}:predict", json={"instances": TOO_SMALL})
    assert v1.status_code == 400 and "Computed output size" in v1.get_json()["error"]
    v2 = client.post(f"/v2/models/{conv['name']}/infer", json={"inputs": [{
        "name": conv["inputs"][0]["name"], "shape": [1, 1, 1, 1], "datatype": "FP32",
        "data": [0.5]}]})
    assert v2.status_code == 422 and "Computed output size" in v2.get_json()["error"]
