"""The operations of openapi.yaml, and a valid body for each that takes one: for tests that
call every operation and must be refused by the owner or id check, never by the body."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.trained import lesson_data

SPEC = yaml.safe_load((Path(__file__).parent.parent / "openapi.yaml").read_text())
METHODS = ("get", "post", "put", "patch", "delete")
ROW = lesson_data(rows=1)[0].tolist()


def operations():
    """(method, path template) of every operation of openapi.yaml."""
    for path, described in SPEC["paths"].items():
        for method in METHODS:
            if method in described:
                yield method, path


def takes_json(method: str, path: str) -> bool:
    body = SPEC["paths"][path][method].get("requestBody") or {}
    return "application/json" in body.get("content", {})


def fill(path: str, values: dict) -> str:
    """`path` with each {parameter} replaced by values[parameter]."""
    return re.sub(r"\{(\w+)\}", lambda match: values[match.group(1)], path)


def valid_bodies(dataset_id: str, input_name: str = "input_layer") -> dict:
    """{(method, path): body} for the lesson's MLP and a dataset with `dataset_id`."""
    predict = {"instances": ROW}
    infer = {"inputs": [{"name": input_name, "shape": [1, 100], "datatype": "FP32",
                         "data": ROW}]}
    return {
        ("patch", "/models/{model_id}"): {"tags": ["taken"]},
        ("post", "/models/{model_id}/compile"): {"loss": "mse", "optimizer": "adam"},
        ("post", "/models/{model_id}/layers"): {"type": "Dense", "units": 2},
        ("post", "/models/{model_id}/fit"): {"dataset": dataset_id, "epochs": 1},
        ("post", "/models/{model_id}/predict"): predict,
        ("post", "/models/{model_id}/evaluate"): {"dataset": dataset_id},
        ("put", "/models/{model_id}/labels/{label}"): {"version": 1},
        ("post", "/v2/models/{name}/infer"): infer,
        ("post", "/v2/models/{name}/versions/{version}/infer"): infer,
        **{("post", path): predict for path in SPEC["paths"] if path.endswith(":predict")},
    }
