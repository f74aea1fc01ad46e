"""A compile never overwrites the file the registry records: a crash or a lost race between
the write and the registry update leaves that file whole, and only a stray new one."""

from __future__ import annotations

import os
import time

from service.config import Config
from service.errors import PreconditionFailed
from service.registry import Database, ModelRegistry
from service.server import prepare_data_dir
from service.storage import sha256_of
from tests.conftest import LESSON_LAYERS
from tests.files import compiled_file
from tests.trained import lesson_data, train_version

COMPILE = {"loss": "mse", "optimizer": "adam"}


def _compiled_model(client, name: str) -> dict:
    model = client.post("/models", json={"name": name, "layers": LESSON_LAYERS}).get_json()
    response = client.post(f"/models/{model['id']}/compile", json=COMPILE)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_a_recompile_writes_a_new_file_and_removes_the_old_one(client, config, unique_name):
    model = _compiled_model(client, unique_name)
    first = compiled_file(config.data_dir, model["id"])
    response = client.post(f"/models/{model['id']}/compile",
                           json={"loss": "categorical_crossentropy", "optimizer": "sgd"})
    assert response.status_code == 200
    second = compiled_file(config.data_dir, model["id"])
    assert second != first and not first.exists()


def test_a_compile_that_loses_the_registry_update_leaves_the_recorded_file(
        app, client, config, unique_name, monkeypatch):
    model = _compiled_model(client, unique_name)
    recorded = compiled_file(config.data_dir, model["id"])
    digest = sha256_of(recorded)
    models = app.extensions["keras_service"].models

    def lost_race(*_, **__):
        raise PreconditionFailed("another change won")

    monkeypatch.setattr(models.registry, "update", lost_race)
    response = client.post(f"/models/{model['id']}/compile",
                           json={"loss": "categorical_crossentropy", "optimizer": "sgd"})
    assert response.status_code == 412
    assert compiled_file(config.data_dir, model["id"]) == recorded
    assert sha256_of(recorded) == digest
    monkeypatch.undo()
    answer = client.get(f"/models/{model['id']}").get_json()
    assert answer["compile"]["loss"] == "mean_squared_error"  # the first compile's


def test_start_up_removes_compiled_files_nothing_records(tmp_path, monkeypatch):
    from service import create_app

    config = Config.from_env(environ={}, data_dir=str(tmp_path))
    app = create_app(config)
    try:
        model = _compiled_model(app.test_client(), "swept")
    finally:
        app.extensions["keras_service"].builder.close()
    recorded = compiled_file(config.data_dir, model["id"])
    store_dir = recorded.parent
    # What a kill between a compile's write and its registry update leaves behind.
    stray = store_dir / "compiled-0123456789ab.keras"
    stray.write_bytes(recorded.read_bytes())

    prepare_data_dir(config)
    assert not stray.exists() and recorded.exists()
    artifacts = ModelRegistry(Database(config.database_url)).artifacts()
    assert artifacts[model["id"]] == recorded.name


def test_start_up_keeps_a_trained_models_last_compile_and_removes_a_killed_recompile(
        tmp_path):
    from service import create_app

    config = Config.from_env(environ={}, data_dir=str(tmp_path))
    app = create_app(config)
    try:
        model = _compiled_model(app.test_client(), "trained")
        train_version(app, model["id"], *lesson_data(rows=8))
    finally:
        app.extensions["keras_service"].builder.close()
    last_compile = compiled_file(config.data_dir, model["id"])
    killed_recompile = last_compile.parent / "compiled-ba9876543210.keras"
    killed_recompile.write_bytes(b"a recompile killed before its registry update")
    os.utime(killed_recompile, ns=(time.time_ns() + 10**9,) * 2)

    prepare_data_dir(config)
    assert compiled_file(config.data_dir, model["id"]) == last_compile
    assert (last_compile.parent / "v1.keras").exists()
