"""Trained versions for tests, made in-process: what the trainer leaves behind, without it.

`train_version` fits the model's compiled file for a few steps, writes `v<N>.keras`
atomically and records the version and the model's new state in the registry, the way a
successful fit job does.
"""

from __future__ import annotations

import uuid

import keras
import numpy as np

from service.registry.tables import Model, Version, utcnow
from service.storage import atomic_path, new_id, sha256_of

LESSON_COMPILE = {"loss": "categorical_crossentropy", "optimizer": "sgd",
                  "metrics": ["accuracy"]}
TWO_INPUTS = {
    "type": "functional",
    "inputs": [{"name": "features", "shape": [4]}, {"name": "extra", "shape": [3]}],
    "layers": [
        {"type": "Dense", "name": "a", "inputs": ["features"], "units": 8,
         "activation": "relu"},
        {"type": "Concatenate", "name": "joined", "inputs": ["a", "extra"]},
        {"type": "Dense", "name": "label", "inputs": ["joined"], "units": 3,
         "activation": "softmax"},
        {"type": "Dense", "name": "score", "inputs": ["joined"], "units": 1},
    ],
    "outputs": ["label", "score"],
}
TWO_INPUTS_COMPILE = {"loss": {"label": "categorical_crossentropy", "score": "mse"},
                      "optimizer": "adam", "metrics": {"label": ["accuracy"]}}


def compiled_model(client, name: str, compile_spec: dict, **create) -> dict:
    """Create a model (`create`: its layers, or a functional graph) and compile it, over HTTP."""
    response = client.post("/models", json={"name": name, **create})
    assert response.status_code == 201, response.get_json()
    response = client.post(f"/models/{response.get_json()['id']}/compile", json=compile_spec)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def train_version(app, model_id: str, x, y, *, epochs: int = 1) -> int:
    """Fit the model's latest file on (x, y), save it as the next version, record it."""
    services = app.extensions["keras_service"]
    store, database = services.store, services.database
    with database.session() as session:
        model = session.get(Model, model_id)
        number = (model.version or 0) + 1
        start = store.artifact_path(model_id, model.artifact)
    keras_model = keras.saving.load_model(start)
    history = keras_model.fit(x, y, epochs=epochs, batch_size=16, verbose=0)
    path = store.version_path(model_id, number)
    with atomic_path(path) as temporary:
        keras_model.save(temporary)
    sha256 = sha256_of(path)
    metrics = {name: float(values[-1]) for name, values in history.history.items()}
    with database.transaction() as session:
        model = session.get(Model, model_id)
        session.add(Version(id=new_id(), tenant_id=model.tenant_id, model_id=model_id,
                            number=number, sha256=sha256, bytes=path.stat().st_size,
                            metrics=metrics, job_id=None))
        model.state, model.version, model.artifact = "trained", number, path.name
        model.artifact_sha256, model.revision, model.updated_at = (
            sha256, model.revision + 1, utcnow())
    database.touch_stamp()  # as JobRegistry.succeed does: web workers see the new version
    return number


def lesson_data(rows: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 100)).astype("float32")
    return x, np.eye(10, dtype="float32")[rng.integers(0, 10, rows)]


def two_input_data(rows: int = 32, seed: int = 0) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    x = {"features": rng.normal(size=(rows, 4)).astype("float32"),
         "extra": rng.normal(size=(rows, 3)).astype("float32")}
    y = {"label": np.eye(3, dtype="float32")[rng.integers(0, 3, rows)],
         "score": rng.normal(size=(rows, 1)).astype("float32")}
    return x, y


def trained_lesson(app, versions: int = 1, client=None) -> dict:
    """The lesson's MLP (input_layer: 100 -> activation_1: 10, softmax) with `versions`
    trained versions, each from other data (so other weights), as GET /models/{id} shows it.
    `client`: one that sends an API key, where the app has keys."""
    from tests.conftest import LESSON_LAYERS

    client = client or app.test_client()
    model = compiled_model(client, f"lesson-{uuid.uuid4().hex[:8]}", LESSON_COMPILE,
                           layers=LESSON_LAYERS)
    for seed in range(versions):
        train_version(app, model["id"], *lesson_data(seed=seed))
    return client.get(f"/models/{model['id']}").get_json()


def trained_two_inputs(app) -> dict:
    """A functional model: inputs features (4) and extra (3), outputs label (3, softmax) and
    score (1); one trained version."""
    client = app.test_client()
    model = compiled_model(client, f"two-{uuid.uuid4().hex[:8]}", TWO_INPUTS_COMPILE,
                           **TWO_INPUTS)
    train_version(app, model["id"], *two_input_data())
    return client.get(f"/models/{model['id']}").get_json()


def load_version_file(config, model: dict, number: int = 1):
    """Version `number` of `model` straight from the data dir, with plain Keras."""
    path = config.data_dir / "models" / model["id"] / f"v{number}.keras"
    return keras.saving.load_model(path, safe_mode=True)
