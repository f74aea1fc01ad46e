"""Bad layer and model specs: each refused in pure Python with a path, before Keras."""

import pytest

from service.errors import InvalidSpec, LimitExceeded
from service.keras_ops import BuildLimits, describe_model
from tests.test_keras_ops_helpers import sequential

BAD_LAYERS = [
    ({"type": "Dense", "units": -5}, "layers[0].units"),
    ({"type": "Dense", "units": 2**62}, "layers[0].units"),
    ({"type": "Dense", "units": "10"}, "layers[0].units"),
    ({"type": "Dense", "units": 10.0}, "layers[0].units"),
    ({"type": "Dense", "units": True}, "layers[0].units"),
    ({"type": "Dense"}, "layers[0].units"),
    ({"type": "Dense", "units": 4, "use_bias": 1}, "layers[0].use_bias"),
    ({"type": "Dense", "units": 4, "unit": 3}, "layers[0].unit"),
    ({"type": "Dense", "units": 4, "activation": "os.system"}, "layers[0].activation"),
    ({"type": "Dense", "units": 4, "activation": {"type": "relu", "module": "os"}},
     "layers[0].activation.module"),
    ({"type": "Dense", "units": 4, "kernel_initializer": {
        "class_name": "RandomNormal", "module": "keras.initializers"}},
     "layers[0].kernel_initializer.class_name"),
    ({"type": "Dense", "units": 4, "kernel_initializer": {"type": "RandomNormal",
                                                          "stddev": 1e308}},
     "layers[0].kernel_initializer.stddev"),
    ({"type": "Dense", "units": 4, "kernel_initializer": {"type": "random_normal",
                                                          "stddev": -1}},
     "layers[0].kernel_initializer.stddev"),
    ({"type": "Dense", "units": 4, "kernel_regularizer": {"type": "l2", "l2": "0.01"}},
     "layers[0].kernel_regularizer.l2"),
    ({"type": "Dense", "units": 4, "kernel_regularizer": "builtins.eval"},
     "layers[0].kernel_regularizer"),
    ({"type": "Dense", "units": 4, "kernel_constraint": {"type": "max_norm",
                                                         "max_value": float("inf")}},
     "layers[0].kernel_constraint.max_value"),
    ({"type": "Dense", "units": 4, "registered_name": "Custom>Dense"},
     "layers[0].registered_name"),
    ({"type": "Lambda", "function": "lambda x: x"}, "layers[0].type"),
    ({"type": "TFSMLayer", "filepath": "/etc/passwd"}, "layers[0].type"),
    ({"type": "TorchModuleWrapper"}, "layers[0].type"),
    ({"type": "keras.layers.Dense", "units": 4}, "layers[0].type"),
    ({"type": "Dens", "units": 4}, "layers[0].type"),
    ({"units": 4}, "layers[0].type"),
    ("Dense", "layers[0]"),
    ({"type": "Dropout", "rate": 1.0}, "layers[0].rate"),
    ({"type": "Dropout", "rate": 1e308}, "layers[0].rate"),
    ({"type": "RepeatVector", "n": 2**62}, "layers[0].n"),
    ({"type": "Reshape", "target_shape": list(range(1, 20))}, "layers[0].target_shape"),
    ({"type": "Conv1D", "filters": 2, "kernel_size": [3, 3]}, "layers[0].kernel_size"),
    ({"type": "Conv1D", "filters": 2, "kernel_size": 3, "padding": "sam"}, "layers[0].padding"),
    ({"type": "StringLookup", "vocabulary": "/etc/passwd"}, "layers[0].vocabulary"),
    ({"type": "TextVectorization", "vocabulary": "vocab.txt"}, "layers[0].vocabulary"),
    ({"type": "TextVectorization", "standardize": "my_module.my_function"},
     "layers[0].standardize"),
    ({"type": "IntegerLookup", "vocabulary": ["a"]}, "layers[0].vocabulary[0]"),
    ({"type": "Dense", "units": 4, "name": "../etc"}, "layers[0].name"),
    ({"type": "Dense", "units": 4, "name": "x" * 65}, "layers[0].name"),
    ({"type": "Dense", "units": 4, "dtype": "object"}, "layers[0].dtype"),
    ({"type": "Dense", "units": 4, "trainable": "yes"}, "layers[0].trainable"),
    ({"type": "Bidirectional", "layer": {"type": "Dense", "units": 4}}, "layers[0].layer.type"),
    ({"type": "Bidirectional", "layer": {"type": "LSTM", "units": -1}},
     "layers[0].layer.units"),
    ({"type": "TimeDistributed", "layer": {"type": "TimeDistributed", "layer": {
        "type": "Dense", "units": 2}}}, "layers[0].layer.type"),
    ({"type": "TimeDistributed", "layer": {"type": "Lambda"}}, "layers[0].layer.type"),
    ({"type": "TimeDistributed", "layer": "Dense"}, "layers[0].layer"),
    ({"type": "Bidirectional", "layer": {"type": "LSTM", "units": 4}, "weights": [[1.0]]},
     "layers[0].weights"),
    ({"type": "Dense", "units": 4, "lora_rank": 4}, "layers[0].lora_rank"),
]


@pytest.mark.parametrize("layer, path", BAD_LAYERS, ids=[p for _, p in BAD_LAYERS])
def test_bad_layer_is_refused_with_its_path(layer, path):
    spec = {"type": "sequential", "layers": [layer]}
    with pytest.raises(InvalidSpec) as caught:
        describe_model(spec, BuildLimits())
    assert caught.value.errors[0]["path"] == path
    assert caught.value.detail.startswith("Layer 0")
    assert "Traceback" not in caught.value.detail


def test_message_names_layer_argument_expectation_and_value():
    spec = sequential({"type": "Dense", "units": 4}, {"type": "Dense", "units": 4},
                      {"type": "Dropout", "rate": 0.1}, {"type": "Dense", "units": -5})
    with pytest.raises(InvalidSpec) as caught:
        describe_model(spec, BuildLimits())
    assert caught.value.detail == ("Layer 3 (Dense 'dense_2'): argument 'units' expects an "
                                   "integer from 1 to 65536; received -5.")
    assert caught.value.errors == [{"path": "layers[3].units",
                                    "message": caught.value.detail}]


def test_every_problem_is_reported():
    spec = sequential({"type": "Dense", "units": 0}, {"type": "Dense", "units": 4, "bias": 1})
    with pytest.raises(InvalidSpec) as caught:
        describe_model(spec, BuildLimits())
    assert [e["path"] for e in caught.value.errors] == ["layers[0].units", "layers[1].bias"]


def test_did_you_mean_for_misspelt_arguments():
    with pytest.raises(InvalidSpec, match="did you mean 'activation'"):
        describe_model(sequential({"type": "Dense", "units": 4, "activaton": "relu"}),
                       BuildLimits())


@pytest.mark.parametrize("spec, path", [
    ("sequential", ""),
    ({"type": "graph", "layers": []}, "type"),
    ({"type": "sequential", "layers": {}}, "layers"),
    ({"type": "sequential", "layers": [], "module": "os"}, "module"),
    (sequential({"type": "Dense", "units": 4}, {"type": "Dense", "units": 4, "input_dim": 3}),
     "layers[1].input_dim"),
    ({"type": "sequential", "layers": [{"type": "Dense", "units": 4, "input_shape": [0]}]},
     "layers[0].input_shape[0]"),
    ({"type": "sequential", "layers": [{"type": "Embedding", "input_dim": 4, "output_dim": 2,
                                        "input_dim_": 3}]}, "layers[0].input_dim_"),
    ({"type": "sequential", "layers": [{"type": "Dense", "units": 4, "input_length": 3}]},
     "layers[0].input_length"),
    ({"type": "functional", "inputs": [{"name": "a", "shape": [4], "dtype": "object"}],
      "layers": [{"type": "Dense", "name": "d", "inputs": ["a"], "units": 2}],
      "outputs": ["d"]}, "inputs[0].dtype"),
    ({"type": "functional", "inputs": [{"name": "a", "shape": [4]}],
      "layers": [{"type": "Dense", "name": "d", "inputs": ["a"], "units": 2,
                  "input_shape": [4]}], "outputs": ["d"]}, "layers[0].input_shape"),
    ({"type": "functional", "inputs": [{"name": "a", "shape": [4]}],
      "layers": [{"type": "Add", "name": "d", "inputs": ["a"]}], "outputs": ["d"]},
     "layers[0].inputs"),
    ({"type": "functional", "inputs": [{"name": "a", "shape": [4]}],
      "layers": [{"type": "Dense", "name": "d", "inputs": ["d"], "units": 2}],
      "outputs": ["d"]}, "layers[0].inputs[0]"),
    ({"type": "functional", "inputs": [{"name": "a", "shape": [4]}],
      "layers": [{"type": "Dense", "name": "d", "inputs": ["a"], "units": 2}],
      "outputs": ["a"]}, "outputs[0]"),
])
def test_bad_model_spec_is_refused_with_its_path(spec, path):
    with pytest.raises(InvalidSpec) as caught:
        describe_model(spec, BuildLimits())
    assert caught.value.errors[0]["path"] == path


def test_deeply_nested_spec_is_refused_before_recursion():
    nested = {"type": "Dense", "units": 4}
    for _ in range(50):
        nested = {"type": "TimeDistributed", "layer": nested}
    with pytest.raises(InvalidSpec, match="nested more than"):
        describe_model({"type": "sequential", "layers": [nested]}, BuildLimits())


def test_too_many_layers_is_a_limit_before_any_check():
    spec = {"type": "sequential", "layers": ["not even a layer"] * 1000}
    with pytest.raises(LimitExceeded, match="1000 layers, over the cap of 200"):
        describe_model(spec, BuildLimits())
