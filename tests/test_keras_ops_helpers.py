"""Small spec builders shared by the keras_ops tests."""

from __future__ import annotations

from service.keras_ops.catalog import LayerEntry

LESSON = {
    "type": "sequential",
    "layers": [
        {"type": "Dense", "units": 100, "input_dim": 100},
        {"type": "Activation", "activation": "relu"},
        {"type": "Dense", "units": 10},
        {"type": "Activation", "activation": "softmax"},
    ],
}


def example_spec(entry: LayerEntry) -> dict:
    """A functional model applying `entry`'s catalogue example to its example inputs."""
    example = entry.example
    inputs = [{"name": f"in{i}", "shape": shape, "dtype": example.get("dtype", "float32")}
              for i, shape in enumerate(example["inputs"])]
    layer = {"type": entry.type, "name": "subject", "inputs": [i["name"] for i in inputs],
             **example["arguments"]}
    return {"type": "functional", "inputs": inputs, "layers": [layer], "outputs": ["subject"]}


def sequential(*layers: dict, shape=(8,)) -> dict:
    """A sequential spec whose first layer gets `input_shape` (unless shape is None)."""
    layers = [dict(layer) for layer in layers]
    if shape is not None and layers:
        layers[0]["input_shape"] = list(shape)
    return {"type": "sequential", "layers": layers}


def two_input_functional() -> dict:
    """Two inputs, a Concatenate, a residual Add and two outputs."""
    return {
        "type": "functional",
        "inputs": [{"name": "a", "shape": [16]}, {"name": "b", "shape": [8]}],
        "layers": [
            {"type": "Dense", "name": "head", "inputs": ["sum"], "units": 3,
             "activation": "softmax"},
            {"type": "Dense", "name": "da", "inputs": ["a"], "units": 8, "activation": "relu"},
            {"type": "Concatenate", "name": "joined", "inputs": ["da", "b"]},
            {"type": "Dense", "name": "mix", "inputs": ["joined"], "units": 8},
            {"type": "Add", "name": "sum", "inputs": ["mix", "da"]},
            {"type": "Dense", "name": "score", "inputs": ["sum"], "units": 1},
        ],
        "outputs": ["head", "score"],
    }
