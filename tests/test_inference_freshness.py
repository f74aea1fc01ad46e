"""Serving from cached rows: no registry query per predict, yet new versions and deletions
are seen at once (the registry stamp), and writes from elsewhere after the refresh time."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import event

from service.registry.stamp import RegistryStamp
from tests.conftest import LESSON_LAYERS
from tests.trained import LESSON_COMPILE, compiled_model, lesson_data, train_version

ROW = [0.5] * 100


@pytest.fixture
def lesson(app, client):
    model = compiled_model(client, f"fresh-{uuid.uuid4().hex[:8]}", LESSON_COMPILE,
                           layers=LESSON_LAYERS)
    train_version(app, model["id"], *lesson_data(rows=16))
    return model


def predict(client, model, **body):
    return client.post(f"/models/{model['id']}/predict", json={"instances": [ROW], **body})


def test_predicts_from_cache_ask_the_registry_nothing(app, client, lesson):
    assert predict(client, lesson).status_code == 200
    engine = app.extensions["keras_service"].database.engine
    statements = []

    def count(*args):
        statements.append(args[2])

    event.listen(engine, "before_cursor_execute", count)
    try:
        for _ in range(20):
            assert predict(client, lesson).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert statements == []


def test_a_new_version_is_served_at_once(app, client, lesson):
    assert predict(client, lesson).get_json()["model_version"] == 1
    train_version(app, lesson["id"], *lesson_data(rows=16, seed=1))
    response = predict(client, lesson)
    assert response.get_json()["model_version"] == 2
    assert response.headers["X-Model-Version"] == "2"
    assert predict(client, lesson, version=1).get_json()["model_version"] == 1


def test_a_deleted_model_is_404_and_its_weights_are_freed(app, client, lesson):
    assert predict(client, lesson).status_code == 200
    cache = app.extensions["keras_service"].inference.cache
    assert lesson["id"] in cache.model_ids()
    assert client.delete(f"/models/{lesson['id']}").status_code == 204
    response = predict(client, lesson)
    assert response.status_code == 404
    assert f"No model with id '{lesson['id']}'" in response.get_json()["detail"]
    assert lesson["id"] not in cache.model_ids()


def test_writes_that_miss_the_stamp_are_seen_after_the_refresh_time(app, client, lesson,
                                                                    monkeypatch):
    # As for a trainer on another host: the registry changes, this host's stamp does not.
    fresh = app.extensions["keras_service"].inference.metadata._fresh
    monkeypatch.setattr(fresh, "stamp", RegistryStamp(None))
    monkeypatch.setattr(fresh, "refresh_s", 3600)
    assert predict(client, lesson).get_json()["model_version"] == 1
    train_version(app, lesson["id"], *lesson_data(rows=16, seed=2))
    assert predict(client, lesson).get_json()["model_version"] == 1
    monkeypatch.setattr(fresh, "_expires", 0.0)  # the refresh time has passed
    assert predict(client, lesson).get_json()["model_version"] == 2


def test_the_stamp_moves_on_every_touch_even_within_one_clock_tick(tmp_path):
    stamp = RegistryStamp(tmp_path / ".registry-stamp")
    assert stamp.read() == 0
    seen = []
    for _ in range(50):
        stamp.touch()
        seen.append(stamp.read())
    assert len(set(seen)) == 50 and seen == sorted(seen)
