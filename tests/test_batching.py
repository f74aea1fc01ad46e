"""Dynamic batching: opt-in per model, each request gets its own rows, a full queue is a 503."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from service.errors import Busy
from service.inference import batching, runtime
from service.inference import service as inference_service
from service.inference.batching import Batcher, BatchPolicy
from tests.test_inference import keras_model
from tests.trained import lesson_data


def patch_batching(client, model, batching):
    return client.patch(f"/models/{model['id']}", json={"batching": batching})


# -- the model setting ---------------------------------------------------------------------

def test_batching_is_off_by_default_and_set_by_patch(client, lesson):
    assert client.get(f"/models/{lesson['id']}").get_json()["batching"] is None
    response = patch_batching(client, lesson, {"max_batch_size": 16, "max_latency_ms": 2})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["batching"] == {"max_batch_size": 16, "max_latency_ms": 2.0,
                                               "max_queue": 256}
    response = patch_batching(client, lesson, None)
    assert response.status_code == 200 and response.get_json()["batching"] is None


@pytest.mark.parametrize("batching, path", [
    ({"max_batch_size": 0}, "batching.max_batch_size"),
    ({"max_batch_size": 5000}, "batching.max_batch_size"),
    ({"max_batch_size": 2.5}, "batching.max_batch_size"),
    ({"max_latency_ms": -1}, "batching.max_latency_ms"),
    ({"max_latency_ms": 10_000}, "batching.max_latency_ms"),
    ({"max_queue": 0}, "batching.max_queue"),
    ({"max_wait": 5}, "batching.max_wait"),
    ([32, 5], "batching._schema"),
])
def test_batching_settings_out_of_bounds_are_422(client, lesson, batching, path):
    response = patch_batching(client, lesson, batching)
    assert response.status_code == 422
    assert path in [error["path"] for error in response.get_json()["errors"]]


# -- over HTTP -----------------------------------------------------------------------------

def test_concurrent_requests_each_get_their_own_rows(app, client, config, lesson,
                                                     monkeypatch):
    calls = []
    real = runtime.predict_arrays

    def counted(loaded, arrays):
        calls.append(arrays[0].shape[0])
        return real(loaded, arrays)

    # Every model call, batched or not, goes through the service's predict_arrays.
    monkeypatch.setattr(inference_service, "predict_arrays", counted)
    assert patch_batching(client, lesson, {"max_batch_size": 32, "max_latency_ms": 200,
                                           "max_queue": 64}).status_code == 200
    x, _ = lesson_data(rows=40, seed=21)
    # 16 requests of 1 to 4 rows each, all different.
    sizes = [1 + index % 4 for index in range(16)]
    starts = np.cumsum([0, *sizes[:-1]])
    parts = [x[start:start + size] for start, size in zip(starts, sizes, strict=True)]
    url = f"/models/{lesson['id']}/predict"

    def one(part):
        response = app.test_client().post(url, json={"instances": part.tolist()})
        assert response.status_code == 200, response.get_json()
        return np.array(response.get_json()["predictions"])

    try:
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(one, parts))
    finally:
        patch_batching(client, lesson, None)
    expected = keras_model(config, lesson).predict(x, verbose=0)
    for part, answer, start in zip(parts, answers, starts, strict=True):
        assert answer.shape == (len(part), 10)
        assert np.allclose(answer, expected[start:start + len(part)], atol=1e-5)
    assert sum(calls) == sum(sizes)
    assert len(calls) < len(parts), f"no request was batched with another: {calls}"


def test_a_full_queue_is_a_503_with_retry_after(app, client, lesson, monkeypatch):
    gate, running = threading.Event(), threading.Event()
    real = runtime.predict_arrays

    def slow(loaded, arrays):
        running.set()
        gate.wait(30)
        return real(loaded, arrays)

    monkeypatch.setattr(inference_service, "predict_arrays", slow)
    assert patch_batching(client, lesson, {"max_batch_size": 8, "max_latency_ms": 0,
                                           "max_queue": 1}).status_code == 200
    url, body = f"/models/{lesson['id']}/predict", {"instances": [[0.5] * 100]}
    statuses = []

    def one():
        statuses.append(app.test_client().post(url, json=body).status_code)

    first = threading.Thread(target=one)
    first.start()  # taken by the batcher, held in `slow`
    assert running.wait(30)
    second = threading.Thread(target=one)
    second.start()  # waits in the queue: the queue is full
    batcher = _batcher(app, lesson)
    deadline = time.monotonic() + 30
    while batcher.queued() < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        response = client.post(url, json=body)
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
        assert response.mimetype == "application/problem+json"
        assert "queue" in response.get_json()["detail"]
        assert "max_queue" in response.get_json()["detail"]
    finally:
        gate.set()
        first.join(30)
        second.join(30)
        patch_batching(client, lesson, None)
    assert statuses == [200, 200]


def _batcher(app, model) -> Batcher:
    cache = app.extensions["keras_service"].inference.cache
    key = next(key for key in cache.keys() if key[0] == model["id"] and not key[3])
    return cache.get(key, lambda: None).batcher


# -- the batcher alone ---------------------------------------------------------------------

def double(arrays):
    return [arrays[0] * 2, arrays[0].sum(axis=1, keepdims=True)]


def test_batcher_splits_outputs_back_per_request():
    batcher = Batcher(double, BatchPolicy(64, 50, 100), "test")
    inputs = [np.full((1 + i % 3, 2), i, dtype=np.float32) for i in range(12)]
    with ThreadPoolExecutor(12) as pool:
        outputs = list(pool.map(lambda a: batcher.submit([a]), inputs))
    for array, (doubled, summed) in zip(inputs, outputs, strict=True):
        assert np.array_equal(doubled, array * 2)
        assert np.array_equal(summed, array.sum(axis=1, keepdims=True))


def test_batcher_keeps_rows_of_other_shapes_apart():
    shapes = []

    def run(arrays):
        shapes.append(arrays[0].shape)
        return [arrays[0]]

    batcher = Batcher(run, BatchPolicy(64, 50, 100), "test")
    inputs = [np.zeros((1, 2 + i % 2), np.float32) for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        outputs = list(pool.map(lambda a: batcher.submit([a]), inputs))
    assert [o[0].shape for o in outputs] == [a.shape for a in inputs]
    assert all(shape[1] in (2, 3) for shape in shapes)


def test_batcher_errors_reach_every_request_of_the_batch():
    def fail(arrays):
        raise ValueError("broken")

    batcher = Batcher(fail, BatchPolicy(8, 20, 100), "test")
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(batcher.submit, [np.zeros((1, 2))]) for _ in range(4)]
    for future in futures:
        with pytest.raises(ValueError, match="broken"):
            future.result()


def test_batcher_refuses_past_max_queue():
    gate, running = threading.Event(), threading.Event()

    def held(arrays):
        running.set()
        gate.wait(10)
        return arrays

    batcher = Batcher(held, BatchPolicy(1, 0, 1), "m")
    threads = [threading.Thread(target=batcher.submit, args=([np.zeros((1, 1))],))
               for _ in range(2)]
    threads[0].start()
    assert running.wait(10)  # the batcher took the first
    threads[1].start()
    while not batcher.queued():
        time.sleep(0.005)
    with pytest.raises(Busy) as refused:
        batcher.submit([np.zeros((1, 1))])
    assert refused.value.headers == {"Retry-After": "1"}
    gate.set()
    for thread in threads:
        thread.join(10)


def test_an_idle_batcher_thread_ends_and_a_new_request_starts_another(monkeypatch):
    monkeypatch.setattr(batching, "IDLE_EXIT_S", 0.05)
    batcher = Batcher(double, BatchPolicy(4, 0, 10), "test")
    batcher.submit([np.ones((1, 2))])
    thread = batcher._thread
    thread.join(5)
    assert not thread.is_alive()
    assert np.array_equal(batcher.submit([np.ones((1, 2))])[0], np.full((1, 2), 2.0))
