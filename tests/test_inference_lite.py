"""Small batches of a hot version on LiteRT (inference/lite.py): Keras' answers, from the
threshold on, in every thread, and TensorFlow wherever LiteRT cannot or does not agree."""

from __future__ import annotations

import logging
import threading
import time
import uuid

import keras
import numpy as np
import pytest

from service import metrics
from service.inference import lite, runtime
from tests.test_inference_direct_call import inputs_for, keras_predict, lstm, mlp, two_towers
from tests.test_metrics import samples, value
from tests.trained import lesson_data, load_version_file

RNG = np.random.default_rng(5)


def cnn():
    return keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(4, 3, activation="relu"),
                             keras.layers.MaxPooling2D(), keras.layers.Flatten(),
                             keras.layers.Dense(10, activation="softmax")])


def embedding():
    return keras.Sequential([keras.Input((7,), dtype="int32"), keras.layers.Embedding(10, 4),
                             keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(2)])


def normalized():
    return keras.Sequential([keras.Input((8,)), keras.layers.Dense(8),
                             keras.layers.BatchNormalization(), keras.layers.Dropout(0.5),
                             keras.layers.Dense(1)])


def any_size_dense():
    return keras.Sequential([keras.Input((None, 4)), keras.layers.Dense(3)])


def arrays_for(model, rows: int) -> list[np.ndarray]:
    if model.inputs[0].dtype == "int32":
        return [RNG.integers(0, 10, (rows, 7)).astype("int32")]
    return inputs_for(model, rows)


def small_batch_forward(model, after_calls: int = 0,
                        model_id: str = "") -> lite.SmallBatchForward:
    return lite.SmallBatchForward(model, runtime.traced_forward(model, "test model"),
                                  "test model", after_calls, model_id)


def outcomes(model_id: str) -> dict[str, float]:
    """{outcome: count} of keras_service_lite_outcomes_total for `model_id`, non-zero only."""
    scraped = samples(metrics.exposition({}).decode())
    counts = {outcome: value(scraped, "keras_service_lite_outcomes_total", model=model_id,
                             outcome=outcome) for outcome in lite.OUTCOMES}
    return {outcome: count for outcome, count in counts.items() if count}


def new_id() -> str:
    return f"lite-{uuid.uuid4().hex[:8]}"


def wait_for_lite(forward: lite.SmallBatchForward, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while forward.lite is None and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.mark.parametrize("make", [mlp, two_towers, cnn, embedding, normalized],
                         ids=lambda make: make.__name__)
def test_small_batches_on_litert_answer_as_keras(make):
    model, model_id = make(), new_id()
    forward = small_batch_forward(model, model_id=model_id)
    assert forward.lite is not None
    assert outcomes(model_id) == {"serving": 1}
    for rows in (1, 5, lite.LITE_MAX_ROWS, lite.LITE_MAX_ROWS + 1):  # the last on TensorFlow
        arrays = arrays_for(model, rows)
        answers, expected = forward(arrays), keras_predict(model, arrays)
        assert len(answers) == len(expected)
        for answer, want in zip(answers, expected, strict=True):
            assert answer.shape == want.shape and answer.dtype == want.dtype
            np.testing.assert_allclose(answer, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("make", "reason"), [
    (lstm, "recurrent layers"),
    (any_size_dense, "has sizes other than the batch left open"),
], ids=["recurrent", "open sizes"])
def test_a_model_litert_cannot_hold_stays_on_tensorflow(make, reason, caplog):
    model, model_id = make(), new_id()
    with caplog.at_level(logging.INFO, logger="service.inference.lite"):
        forward = small_batch_forward(model, model_id=model_id)
    assert forward.lite is None
    assert reason in caplog.text
    assert outcomes(model_id) == {"not_convertible": 1}
    arrays = inputs_for(model, 2)
    np.testing.assert_allclose(forward(arrays)[0], keras_predict(model, arrays)[0], atol=1e-6)


def test_conversion_starts_after_the_threshold_of_small_batches_in_the_background():
    model = mlp()
    forward = small_batch_forward(model, after_calls=3)
    big = inputs_for(model, lite.LITE_MAX_ROWS + 1)
    forward(big)  # large batches do not count
    for _ in range(2):
        forward(inputs_for(model, 1))
    time.sleep(0.5)
    assert forward.lite is None and not forward._started
    forward(inputs_for(model, 1))
    assert forward._started
    wait_for_lite(forward)
    assert forward.lite is not None
    arrays = inputs_for(model, 3)
    np.testing.assert_allclose(forward(arrays)[0], keras_predict(model, arrays)[0],
                               rtol=1e-5, atol=1e-6)


class Counting:
    """A LiteForward, counting its calls."""

    def __init__(self, real: lite.LiteForward):
        self.real, self.calls = real, 0

    def __call__(self, arrays):
        self.calls += 1
        return self.real(arrays)


def timed_as(lite_ms: dict[int, float], tensorflow_ms: float):
    """A stand-in for median_seconds: LiteRT takes lite_ms[rows], TensorFlow tensorflow_ms."""
    def median_seconds(forward, batch):
        on_lite = isinstance(forward, lite.LiteForward)
        return (lite_ms[batch[0].shape[0]] if on_lite else tensorflow_ms) / 1000
    return median_seconds


def test_litert_serves_up_to_the_largest_batch_it_was_faster_at(monkeypatch, caplog):
    monkeypatch.setattr(lite, "median_seconds", timed_as({1: 0.1, 8: 0.5, 64: 3.0}, 1.0))
    model = mlp()
    with caplog.at_level(logging.INFO, logger="service.inference.lite"):
        forward = small_batch_forward(model)
    assert forward.lite_max_rows == 8
    assert "LiteRT serves batches of up to 8 row(s)" in caplog.text
    counting = forward.lite = Counting(forward.lite)
    for rows, on_lite in ((1, 1), (8, 2), (9, 2), (64, 2)):
        arrays = inputs_for(model, rows)
        np.testing.assert_allclose(forward(arrays)[0], keras_predict(model, arrays)[0],
                                   rtol=1e-5, atol=1e-6)
        assert counting.calls == on_lite, rows


def test_litert_slower_even_at_one_row_is_not_used(monkeypatch, caplog):
    monkeypatch.setattr(lite, "median_seconds", timed_as({1: 2.0, 8: 2.0, 64: 2.0}, 1.0))
    model_id = new_id()
    with caplog.at_level(logging.INFO, logger="service.inference.lite"):
        forward = small_batch_forward(mlp(), model_id=model_id)
    assert forward.lite is None
    assert "LiteRT is slower than TensorFlow even at one row" in caplog.text
    assert outcomes(model_id) == {"slower": 1}


def test_each_thread_runs_its_own_interpreter_at_its_own_sizes():
    model = two_towers()
    forward = small_batch_forward(model)
    cases = [arrays_for(model, rows) for rows in (1, 2, 7, 1, 30, 3, 64, 5)]
    expected = [keras_predict(model, arrays) for arrays in cases]
    failures = []

    def run(index: int) -> None:
        for turn in range(40):
            case = (index + turn) % len(cases)
            for answer, want in zip(forward(cases[case]), expected[case], strict=True):
                if not np.allclose(answer, want, rtol=1e-5, atol=1e-6):
                    failures.append((index, turn))

    threads = [threading.Thread(target=run, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    assert forward.lite is not None


class Off:
    """A LiteForward stand-in: answers a little off, or fails."""

    def __init__(self, real: lite.LiteForward, fail: bool = False):
        self.real, self.fail, self.calls = real, fail, 0

    def __call__(self, arrays):
        self.calls += 1
        if self.fail:
            raise RuntimeError("a LiteRT kernel failed")
        return [answer + 1e-3 for answer in self.real(arrays)]


def answering_otherwise(converted):
    return lambda model, label: Off(converted(model, label))


def raising(converted):
    def broken(model, label):
        raise MemoryError("the converter ran out of memory")
    return broken


@pytest.mark.parametrize(("replace", "logged", "outcome"), [
    (answering_otherwise, "LiteRT answers otherwise than TensorFlow", "answers_otherwise"),
    (raising, "LiteRT conversion failed; TensorFlow serves", "failed"),
], ids=["answers otherwise", "conversion raises"])
def test_a_conversion_gone_wrong_leaves_tensorflow_serving(monkeypatch, caplog, replace, logged,
                                                           outcome):
    monkeypatch.setattr(lite, "converted", replace(lite.converted))
    model, model_id = mlp(), new_id()
    with caplog.at_level(logging.WARNING, logger="service.inference.lite"):
        forward = small_batch_forward(model, model_id=model_id)
    assert forward.lite is None
    assert logged in caplog.text
    assert outcomes(model_id) == {outcome: 1}
    arrays = inputs_for(model, 1)
    np.testing.assert_allclose(forward(arrays)[0], keras_predict(model, arrays)[0], atol=1e-6)


def test_a_failing_litert_call_is_answered_by_tensorflow_which_serves_from_then_on(caplog):
    model, model_id = mlp(), new_id()
    forward = small_batch_forward(model, model_id=model_id)
    failing = Off(forward.lite, fail=True)
    forward.lite = failing
    arrays = inputs_for(model, 2)
    with caplog.at_level(logging.ERROR, logger="service.inference.lite"):
        answer = forward(arrays)
    np.testing.assert_allclose(answer[0], keras_predict(model, arrays)[0], atol=1e-6)
    assert forward.lite is None and failing.calls == 1
    forward(arrays)
    assert failing.calls == 1
    assert "LiteRT failed a call" in caplog.text
    assert outcomes(model_id) == {"serving": 1, "dropped": 1}


def test_a_served_version_moves_to_litert_after_the_threshold(app, client, config, lesson):
    """Through the API: the lesson's version turns hot, converts, and answers as Keras."""
    x, _ = lesson_data(rows=1, seed=9)
    for _ in range(config.lite_after_calls):
        assert client.post(f"/models/{lesson['id']}/predict",
                           json={"instances": x.tolist()}).status_code == 200
    cache = app.extensions["keras_service"].inference.cache
    forward = cache.get((lesson["id"], 1, lesson_version_sha(client, lesson), False),
                        lambda: pytest.fail("the version is not cached")).forward
    wait_for_lite(forward)
    assert forward.lite is not None

    def served() -> float:
        scraped = samples(client.get("/metrics").get_data(as_text=True))
        return value(scraped, "keras_service_lite_outcomes_total", model=lesson["id"],
                     outcome="serving")

    deadline = time.monotonic() + 10  # counted just after `lite` is set, in that thread
    while not served() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert served() == 1
    response = client.post(f"/models/{lesson['id']}/predict", json={"instances": x.tolist()})
    expected = load_version_file(config, lesson).predict(x, verbose=0)
    np.testing.assert_allclose(response.get_json()["predictions"], expected, rtol=1e-5, atol=1e-6)


def lesson_version_sha(client, model: dict) -> str:
    return client.get(f"/models/{model['id']}/versions/1").get_json()["sha256"]
