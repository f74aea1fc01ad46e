"""The allow-list: its document, its coverage of Keras signatures, every layer builds."""

import json

import keras
import pytest

from service.keras_ops import BuildLimits, catalog_document, describe_model, save_compiled
from service.keras_ops.catalog import LAYERS, NOT_EXPOSED
from service.keras_ops.compilation import LOSS, METRIC, OPTIMIZER
from tests.test_keras_ops_helpers import example_spec


def test_catalog_document_is_json_with_every_section():
    document = catalog_document()
    json.dumps(document, allow_nan=False)
    assert set(document) >= {"layers", "losses", "optimizers", "metrics", "activations",
                             "initializers", "regularizers", "constraints"}
    assert len(document["layers"]) >= 45
    dense = document["layers"]["Dense"]
    assert dense["category"] == "core"
    assert dense["description"].startswith("Just your regular densely-connected")
    assert dense["arguments"]["units"] == {"type": "integer", "minimum": 1, "maximum": 65536,
                                           "required": True}
    assert dense["arguments"]["use_bias"]["default"] is True
    assert dense["inputs"] == "one"
    assert document["layers"]["Add"]["inputs"] == "list"
    assert document["optimizers"]["adam"]["arguments"]["learning_rate"]["default"] == 0.001
    assert "relu" in document["activations"]
    assert "categorical_crossentropy" in document["losses"]


@pytest.mark.parametrize("entry", LAYERS.values(), ids=lambda entry: entry.type)
def test_every_signature_argument_is_exposed_or_deliberately_hidden(entry):
    for name in entry.defaults:
        hidden_here = name in entry.overrides and entry.overrides[name] is None
        assert name in entry.arguments or name in NOT_EXPOSED or hidden_here, (
            f"{entry.type}({name}=...) has no descriptor and no reason to be hidden")
    for name in entry.overrides:
        assert name in entry.defaults, f"{entry.type} override '{name}' is not in its signature"


@pytest.mark.parametrize("layer_type, arguments", [
    ("Dense", {"units", "activation", "use_bias", "kernel_initializer", "kernel_regularizer"}),
    ("Conv2D", {"filters", "kernel_size", "strides", "padding", "dilation_rate", "groups"}),
    ("LSTM", {"units", "return_sequences", "return_state", "dropout", "recurrent_dropout"}),
    ("Embedding", {"input_dim", "output_dim", "mask_zero", "embeddings_initializer"}),
    ("MultiHeadAttention", {"num_heads", "key_dim", "value_dim", "dropout"}),
    ("BatchNormalization", {"axis", "momentum", "epsilon", "center", "scale"}),
    ("Bidirectional", {"layer", "merge_mode"}),
    ("Dropout", {"rate", "seed", "name", "trainable", "dtype"}),
])
def test_important_arguments_are_exposed(layer_type, arguments):
    assert arguments <= set(LAYERS[layer_type].arguments)


@pytest.mark.parametrize("entry", LAYERS.values(), ids=lambda entry: entry.type)
def test_every_catalogue_layer_builds_from_its_example(entry):
    described = describe_model(example_spec(entry), BuildLimits())
    assert described["built"] is True
    assert described["layers"][0]["name"] == "subject"
    assert described["layers"][0]["output_shape"] is not None


def test_every_catalogue_layer_saves_and_loads_in_safe_mode(tmp_path):
    # One test, not one per layer: a save costs ~60 ms, a parametrized setup more.
    failures = []
    for entry in LAYERS.values():
        path = tmp_path / f"{entry.type}.keras"
        try:
            save_compiled(example_spec(entry), {"loss": "mse"}, str(path), BuildLimits())
            loaded = keras.saving.load_model(path)
            assert loaded.layers[-1].name == "subject"
        except Exception as error:  # collect them all: one report names every failure
            failures.append(f"{entry.type}: {error}")
    assert not failures


@pytest.mark.parametrize("kind", [LOSS, OPTIMIZER, METRIC], ids=lambda kind: kind.kind)
def test_every_loss_optimizer_and_metric_constructs_with_defaults(kind):
    for name in kind.table:
        kind.to_keras(kind.check(name))


def test_object_names_accept_keras_spellings_and_normalize_to_snake_case():
    assert LOSS.check("mse") == "mean_squared_error"
    assert LOSS.check({"type": "CategoricalCrossentropy", "from_logits": True}) == {
        "type": "categorical_crossentropy", "from_logits": True}
    assert OPTIMIZER.check({"type": "Adam"}) == "adam"
    assert OPTIMIZER.to_keras("adam").name == "adam"
