"""describe_model: the lesson model, sequential and functional specs, checks and caps."""

import keras
import pytest
from keras.src.backend.common import global_state

from service.errors import InvalidSpec, LimitExceeded
from service.keras_ops import BuildLimits, describe_model
from tests.test_keras_ops_helpers import LESSON, sequential, two_input_functional

LIMITS = BuildLimits()


def test_lesson_model_counts_parameters_and_shapes():
    described = describe_model(LESSON, LIMITS)
    assert described["built"] is True
    assert described["params"] == 11110
    assert described["outputs"] == [{"name": "activation_1", "shape": [None, 10],
                                     "dtype": "float32"}]
    assert described["inputs"][0]["shape"] == [None, 100]
    assert [layer["name"] for layer in described["layers"]] == [
        "dense", "activation", "dense_1", "activation_1"]
    assert described["layers"][0] == {
        "index": 0, "type": "Dense", "name": "dense", "config": {"units": 100},
        "output_shape": [None, 100], "params": 10100}
    assert "Total params" in described["summary"]
    assert described["spec"]["layers"][0] == {
        "type": "Dense", "name": "dense", "units": 100, "input_dim": 100}


def test_names_do_not_depend_on_earlier_builds():
    keras.layers.Dense(3)  # bumps Keras' process-global name counter
    first = describe_model(LESSON, LIMITS)["spec"]
    assert describe_model(LESSON, LIMITS)["spec"] == first
    assert first["layers"][2]["name"] == "dense_1"


def test_filled_names_skip_names_the_client_chose():
    spec = sequential({"type": "Dense", "units": 4, "name": "dense"},
                      {"type": "Dense", "units": 2})
    names = [layer["name"] for layer in describe_model(spec, LIMITS)["spec"]["layers"]]
    assert names == ["dense", "dense_1"]


def test_stateless_build_leaves_no_uninitialized_variables_behind():
    describe_model(LESSON, LIMITS)
    assert not global_state.get_global_attribute("uninitialized_variables")


def test_sequential_without_input_shape_is_unbuilt_but_checked():
    spec = {"type": "sequential", "layers": [{"type": "Dense", "units": 4},
                                             {"type": "Dropout", "rate": 0.5}]}
    described = describe_model(spec, LIMITS)
    assert described["built"] is False
    assert described["params"] is None and described["summary"] is None
    assert [layer["output_shape"] for layer in described["layers"]] == [None, None]
    with pytest.raises(InvalidSpec):
        describe_model({"type": "sequential", "layers": [{"type": "Dense", "units": 0}]},
                       LIMITS)


def test_empty_sequential_is_unbuilt():
    described = describe_model({"type": "sequential", "layers": []}, LIMITS)
    assert described["built"] is False and described["layers"] == []


def test_embedding_input_dim_is_the_vocabulary_size():
    spec = sequential({"type": "Embedding", "input_dim": 1000, "output_dim": 8},
                      {"type": "GlobalAveragePooling1D"}, {"type": "Dense", "units": 1},
                      shape=(20,))
    described = describe_model(spec, LIMITS)
    assert described["layers"][0]["params"] == 8000
    assert described["layers"][0]["output_shape"] == [None, 20, 8]
    assert described["spec"]["layers"][0]["input_shape"] == [20]

    by_length = dict(spec, layers=[{"type": "Embedding", "input_dim": 50, "output_dim": 4,
                                    "input_length": 7}])
    assert describe_model(by_length, LIMITS)["outputs"][0]["shape"] == [None, 7, 4]


def test_functional_two_inputs_concatenate_residual_add_two_outputs():
    described = describe_model(two_input_functional(), LIMITS)
    assert [o["name"] for o in described["outputs"]] == ["head", "score"]
    assert described["outputs"][0]["shape"] == [None, 3]
    shapes = {layer["name"]: layer["output_shape"] for layer in described["layers"]}
    assert shapes["joined"] == [None, 16]
    assert described["params"] == (16 * 8 + 8) + (16 * 8 + 8) + (8 * 3 + 3) + (8 + 1)
    # Layers keep the client's order in the spec; inputs get a default dtype.
    assert [layer["name"] for layer in described["spec"]["layers"]][0] == "head"
    assert described["spec"]["inputs"][0] == {"name": "a", "shape": [16], "dtype": "float32"}


def test_functional_attention_with_query_and_value():
    spec = {
        "type": "functional",
        "inputs": [{"name": "q", "shape": [5, 8]}, {"name": "v", "shape": [7, 8]}],
        "layers": [{"type": "MultiHeadAttention", "name": "mha", "inputs": ["q", "v"],
                    "num_heads": 2, "key_dim": 4},
                   {"type": "LayerNormalization", "name": "norm", "inputs": ["mha"]}],
        "outputs": ["norm"],
    }
    assert describe_model(spec, LIMITS)["outputs"][0]["shape"] == [None, 5, 8]


def test_wrappers_take_nested_layers_and_fill_their_names():
    spec = sequential({"type": "Bidirectional", "layer": {"type": "LSTM", "units": 4,
                                                          "return_sequences": True}},
                      {"type": "TimeDistributed", "layer": {"type": "Dense", "units": 2}},
                      shape=(6, 3))
    described = describe_model(spec, LIMITS)
    assert described["spec"]["layers"][0]["layer"]["name"] == "lstm"
    assert described["outputs"][0]["shape"] == [None, 6, 2]


def _error(spec, limits=LIMITS):
    with pytest.raises(InvalidSpec) as caught:
        describe_model(spec, limits)
    return caught.value


def _graph(layers, outputs, inputs=({"name": "a", "shape": [4]},)):
    return {"type": "functional", "inputs": list(inputs), "layers": layers, "outputs": outputs}


def test_cycle_names_the_layers():
    error = _error(_graph([
        {"type": "Dense", "name": "d1", "inputs": ["d2"], "units": 4},
        {"type": "Dense", "name": "d2", "inputs": ["d1"], "units": 4},
        {"type": "Add", "name": "out", "inputs": ["a", "d2"]}], ["out"]))
    assert "cycle" in error.detail and "'d1'" in error.detail


def test_unknown_input_name_is_named():
    error = _error(_graph([{"type": "Dense", "name": "d1", "inputs": ["aa"], "units": 4}],
                          ["d1"]))
    assert error.errors[0]["path"] == "layers[0].inputs[0]"
    assert "Layer 'd1' (Dense)" in error.detail and "'aa'" in error.detail


def test_unused_input_is_refused():
    error = _error(_graph([{"type": "Dense", "name": "d1", "inputs": ["a"], "units": 4}],
                          ["d1"], inputs=({"name": "a", "shape": [4]},
                                          {"name": "b", "shape": [4]})))
    assert error.errors[0]["path"] == "inputs[1]" and "'b'" in error.detail


def test_layer_that_reaches_no_output_is_refused():
    error = _error(_graph([{"type": "Dense", "name": "d1", "inputs": ["a"], "units": 4},
                           {"type": "Dense", "name": "dead", "inputs": ["a"], "units": 4}],
                          ["d1"]))
    assert "Layer 'dead' (Dense)" in error.detail and "output" in error.detail


def test_duplicate_names_are_refused():
    error = _error(_graph([{"type": "Dense", "name": "a", "inputs": ["a"], "units": 4}], ["a"]))
    assert error.errors[0]["path"] == "layers[0].name"
    assert "already used" in error.detail


def test_output_naming_nothing_is_refused():
    error = _error(_graph([{"type": "Dense", "name": "d1", "inputs": ["a"], "units": 4}],
                          ["d2"]))
    assert error.errors[0]["path"] == "outputs[0]" and "d1" in error.detail


def test_functional_layer_needs_a_name():
    error = _error(_graph([{"type": "Dense", "inputs": ["a"], "units": 4}], ["d1"]))
    assert error.errors[0]["path"] == "layers[0].name"


def test_shape_mismatch_returns_keras_reason_naming_the_layer():
    error = _error(sequential({"type": "Dense", "units": 4}, {"type": "Conv2D", "filters": 2,
                                                             "kernel_size": 3}))
    assert error.detail.startswith("Layer 1 (Conv2D 'conv2d'):")
    assert error.errors[0]["path"] == "layers[1]"
    assert "Traceback" not in error.detail

    merge = _error(_graph([{"type": "Dense", "name": "d1", "inputs": ["a"], "units": 3},
                           {"type": "Add", "name": "sum", "inputs": ["a", "d1"]}], ["sum"]))
    assert merge.detail.startswith("Layer 'sum' (Add):")


def test_parameter_cap_is_checked_without_allocating():
    spec = sequential({"type": "Dense", "units": 60000}, shape=(1000,))
    with pytest.raises(LimitExceeded) as caught:
        describe_model(spec, BuildLimits(max_params=50_000_000))
    assert caught.value.detail == ("The model has 60,060,000 parameters, over the cap of "
                                   "50,000,000 (KERAS_SERVICE_MAX_PARAMS).")


def test_ten_billion_parameters_are_counted_instantly():
    spec = sequential({"type": "Dense", "units": 65536}, {"type": "Dense", "units": 65536},
                      {"type": "Dense", "units": 65536}, shape=(65536,))
    with pytest.raises(LimitExceeded, match="12,885,098,496 parameters"):
        describe_model(spec, LIMITS)


def test_layer_cap():
    spec = {"type": "sequential", "layers": [{"type": "Identity"}] * 3}
    with pytest.raises(LimitExceeded, match="KERAS_SERVICE_MAX_LAYERS"):
        describe_model(spec, BuildLimits(max_layers=2))
