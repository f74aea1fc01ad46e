"""save_compiled: compile specs, the .keras round trip, atomic writes."""

import hashlib

import keras
import numpy as np
import pytest

from service.errors import InvalidSpec, LimitExceeded
from service.keras_ops import BuildLimits, save_compiled
from service.storage import TEMP_PREFIX
from tests.test_keras_ops_helpers import LESSON, sequential, two_input_functional

LIMITS = BuildLimits()


def test_lesson_model_saves_and_loads_in_safe_mode(tmp_path):
    path = tmp_path / "models" / "compiled.keras"
    result = save_compiled(LESSON, {"loss": "categorical_crossentropy", "optimizer": "sgd",
                                    "metrics": ["accuracy"]}, str(path), LIMITS)
    assert result["compile"] == {"loss": "categorical_crossentropy", "optimizer": "sgd",
                                 "metrics": ["accuracy"]}
    assert result["bytes"] == path.stat().st_size
    assert result["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    loaded = keras.saving.load_model(path)
    assert loaded.count_params() == 11110
    assert [layer.name for layer in loaded.layers] == [
        "dense", "activation", "dense_1", "activation_1"]
    assert loaded.optimizer.name == "sgd"
    assert loaded.predict(np.zeros((2, 100)), verbose=0).shape == (2, 10)
    assert not [p for p in path.parent.iterdir() if p.name.startswith(TEMP_PREFIX)]


def test_functional_model_with_per_output_losses_metrics_and_weights(tmp_path):
    path = tmp_path / "two.keras"
    compile_spec = {
        "loss": {"head": {"type": "categorical_crossentropy", "label_smoothing": 0.1},
                 "score": "mse"},
        "optimizer": {"type": "adam", "learning_rate": 0.01, "beta_1": 0.8},
        "metrics": {"head": ["accuracy", {"type": "top_k_categorical_accuracy", "k": 2}],
                    "score": ["mae"]},
        "loss_weights": {"head": 1.0, "score": 0.5},
    }
    result = save_compiled(two_input_functional(), compile_spec, str(path), LIMITS)
    assert result["compile"]["loss"]["score"] == "mean_squared_error"
    loaded = keras.saving.load_model(path)
    assert loaded.output_names == ["head", "score"]
    assert float(loaded.optimizer.learning_rate) == pytest.approx(0.01)
    x = {"a": np.ones((4, 16)), "b": np.ones((4, 8))}
    y = {"head": np.eye(3)[[0, 1, 2, 0]], "score": np.zeros((4, 1))}
    assert len(loaded.evaluate(x, y, verbose=0)) >= 3


@pytest.mark.filterwarnings("ignore:You are saving a model that has not yet been built")
def test_unbuilt_sequential_can_be_saved(tmp_path):
    path = tmp_path / "unbuilt.keras"
    spec = {"type": "sequential", "layers": [{"type": "Dense", "units": 4}]}
    save_compiled(spec, {"loss": "mse"}, str(path), LIMITS)
    assert keras.saving.load_model(path).layers[0].name == "dense"


@pytest.mark.parametrize("compile_spec, path", [
    ({"loss": "categorical_crossentropyy"}, "loss"),
    ({"loss": "os.system"}, "loss"),
    ({"loss": {"type": "huber", "delta": -1}}, "loss.delta"),
    ({"loss": {"type": "mse", "module": "keras.losses"}}, "loss.module"),
    ({"loss": {"nothead": "mse"}}, "loss.nothead"),
    ({"loss": "mse", "optimizer": "adamm"}, "optimizer"),
    ({"loss": "mse", "optimizer": {"type": "adam", "learning_rate": 1e308}},
     "optimizer.learning_rate"),
    ({"loss": "mse", "optimizer": {"type": "sgd", "nesterov": 1}}, "optimizer.nesterov"),
    ({"loss": "mse", "metrics": ["accuracy", "f2"]}, "metrics[1]"),
    ({"loss": "mse", "loss_weights": [1.0, 2.0]}, "loss_weights"),
    ({"loss": "mse", "run_eagerly": True}, "run_eagerly"),
    ({"optimizer": "adam"}, "loss"),
])
def test_bad_compile_spec_leaves_no_file(tmp_path, compile_spec, path):
    target = tmp_path / "m.keras"
    with pytest.raises(InvalidSpec) as caught:
        save_compiled(LESSON, compile_spec, str(target), LIMITS)
    assert caught.value.errors[0]["path"] == path
    assert not list(tmp_path.iterdir())


def test_unknown_loss_lists_accepted_ones(tmp_path):
    with pytest.raises(InvalidSpec, match="categorical_crossentropy") as caught:
        save_compiled(LESSON, {"loss": "cross"}, str(tmp_path / "m.keras"), LIMITS)
    assert "GET /catalog" in caught.value.detail


def test_model_past_the_parameter_cap_is_never_allocated(tmp_path):
    spec = sequential({"type": "Dense", "units": 60000}, shape=(1000,))
    with pytest.raises(LimitExceeded):
        save_compiled(spec, {"loss": "mse"}, str(tmp_path / "m.keras"), LIMITS)
    assert not list(tmp_path.iterdir())


def test_keras_refusal_at_build_leaves_no_file(tmp_path):
    spec = sequential({"type": "Dense", "units": 4}, {"type": "Conv2D", "filters": 2,
                                                     "kernel_size": 3})
    with pytest.raises(InvalidSpec):
        save_compiled(spec, {"loss": "mse"}, str(tmp_path / "m.keras"), LIMITS)
    assert not list(tmp_path.iterdir())
