"""The forward pass calls its traced graph directly (runtime.DirectCall): Keras' own answers,
in the calling thread where TensorFlow can, and the public call wherever it cannot."""

from __future__ import annotations

import threading

import keras
import numpy as np
import pytest
import tensorflow as tf

from service.inference import runtime

RNG = np.random.default_rng(11)


def mlp():
    return keras.Sequential([keras.Input((20,)), keras.layers.Dense(16, activation="relu"),
                             keras.layers.Dense(4, activation="softmax")])


def two_towers():
    a, b = keras.Input((4,), name="features"), keras.Input((3,), name="extra")
    joined = keras.layers.Concatenate()([keras.layers.Dense(8, activation="relu")(a), b])
    return keras.Model([a, b], [keras.layers.Dense(3, name="label")(joined),
                                keras.layers.Dense(1, name="score")(joined)])


def lstm():
    return keras.Sequential([keras.Input((None, 5)), keras.layers.LSTM(6),
                             keras.layers.Dense(2)])


def any_size_conv():
    return keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(4, 3),
                             keras.layers.GlobalAveragePooling2D()])


def inputs_for(model, rows: int = 5) -> list[np.ndarray]:
    return [RNG.normal(size=(rows, *(7 if dim is None else dim for dim in spec.shape[1:])))
            .astype("float32") for spec in model.inputs]


def keras_predict(model, arrays: list[np.ndarray]) -> list[np.ndarray]:
    answer = model.predict(arrays if len(arrays) > 1 else arrays[0], verbose=0)
    return list(answer) if isinstance(answer, list | tuple) else [answer]


def chosen_call(model):
    """What `checked_direct_call` picks for `model`, traced as `traced_forward` traces it."""
    concrete = tf.function(lambda *inputs: model(list(inputs) if len(inputs) > 1 else inputs[0],
                                                 training=False),
                           input_signature=[tf.TensorSpec(spec.shape, spec.dtype)
                                            for spec in model.inputs]).get_concrete_function()
    zeros = [np.zeros((1, *(1 if dim is None else dim for dim in spec.shape[1:])), "float32")
             for spec in model.inputs]
    return runtime.checked_direct_call(tf, concrete, concrete,
                                       [spec.dtype for spec in model.inputs], zeros, "test model")


def bfloat16_input():
    return keras.Sequential([keras.Input((6,), dtype="bfloat16"), keras.layers.Dense(3)])


@pytest.mark.parametrize("build", [mlp, two_towers, lstm, any_size_conv, bfloat16_input])
def test_the_forward_pass_answers_as_keras_predict(build):
    model = build()
    arrays = inputs_for(model)
    answers = runtime.traced_forward(model, "test model")(arrays)
    for answer, expected in zip(answers, keras_predict(model, arrays), strict=True):
        assert answer.shape == expected.shape
        assert np.allclose(answer, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("build, executor", [
    (mlp, "SINGLE_THREADED_EXECUTOR"),
    (two_towers, "SINGLE_THREADED_EXECUTOR"),
    (lstm, ""),  # a while loop: low-level control flow, which only the usual executor runs
])
def test_the_calling_thread_runs_the_graph_where_tensorflow_can(build, executor):
    call = chosen_call(build())
    assert isinstance(call, runtime.DirectCall)
    assert call.executor == executor


def test_a_model_that_refuses_zeros_keeps_the_public_call():
    model = any_size_conv()  # a 3x3 kernel on the 1x1 warm-up image: nothing to compare
    assert chosen_call(model) is None


def test_other_tensorflow_internals_leave_the_public_call(monkeypatch, caplog):
    def changed(self, *args):
        raise AttributeError("'ConcreteFunction' object has no attribute '_inference_function'")

    monkeypatch.setattr(runtime.DirectCall, "__init__", changed)
    model = mlp()
    assert chosen_call(model) is None
    assert "internals are not those expected" in caplog.text
    arrays = inputs_for(model)
    answer = runtime.traced_forward(model, "test model")(arrays)[0]
    assert np.allclose(answer, keras_predict(model, arrays)[0], rtol=1e-6, atol=1e-6)


def test_concurrent_calls_each_get_their_own_answer():
    model = mlp()
    forward = runtime.traced_forward(model, "test model")
    batches = [inputs_for(model, rows) for rows in range(1, 9)]
    expected = [forward(arrays)[0] for arrays in batches]
    failures = []

    def hammer(index: int) -> None:
        for _ in range(50):
            if not np.array_equal(forward(batches[index])[0], expected[index]):
                failures.append(index)

    threads = [threading.Thread(target=hammer, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
