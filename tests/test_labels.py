"""Labels over HTTP: set, move, list, remove; /v1 serves a label's version; 404s."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from service.registry.labels import LabelRegistry
from service.registry.tables import DEFAULT_TENANT, Label, Version
from service.storage import new_id
from tests.conftest import LESSON_LAYERS
from tests.trained import LESSON_COMPILE, compiled_model, lesson_data, trained_lesson

JSON_PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def mlp(app):
    """The lesson's model with versions 1 and 2 (trained on other data: other weights)."""
    return trained_lesson(app, versions=2)


def with_versions(app, client, name: str, count: int) -> dict:
    """A compiled model with `count` version rows (no files): enough for labels."""
    model = compiled_model(client, name, LESSON_COMPILE, layers=LESSON_LAYERS)
    with app.extensions["keras_service"].database.transaction() as session:
        for number in range(1, count + 1):
            session.add(Version(id=new_id(), tenant_id=DEFAULT_TENANT, model_id=model["id"],
                                number=number, sha256="0" * 64, bytes=1, metrics={}))
    return model


def put_label(client, model: dict, label: str, version):
    return client.put(f"/models/{model['id']}/labels/{label}", json={"version": version})


def by_label(client, model: dict, label: str, x) -> np.ndarray:
    response = client.post(f"/v1/models/{model['name']}/labels/{label}:predict",
                           json={"instances": x.tolist()})
    assert response.status_code == 200, response.get_json()
    return np.array(response.get_json()["predictions"])


def by_version(client, model: dict, number: int, x) -> np.ndarray:
    response = client.post(f"/models/{model['id']}/predict",
                           json={"instances": x.tolist(), "version": number})
    return np.array(response.get_json()["predictions"])


def test_a_label_switch_moves_predictions_to_the_new_version(client, mlp):
    x, _ = lesson_data(rows=3, seed=5)
    v1, v2 = by_version(client, mlp, 1, x), by_version(client, mlp, 2, x)
    assert not np.allclose(v1, v2)

    response = put_label(client, mlp, "stable", 1)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert {k: body[k] for k in ("label", "version", "model_id")} == {
        "label": "stable", "version": 1, "model_id": mlp["id"]}
    assert body["updated_at"].endswith("+00:00")
    assert put_label(client, mlp, "canary", 2).status_code == 200
    assert np.allclose(by_label(client, mlp, "stable", x), v1)
    assert np.allclose(by_label(client, mlp, "canary", x), v2)
    status = client.get(f"/v1/models/{mlp['name']}/labels/stable").get_json()
    assert [s["version"] for s in status["model_version_status"]] == ["1"]
    metadata = client.get(f"/v1/models/{mlp['name']}/labels/canary/metadata").get_json()
    assert metadata["model_spec"]["version"] == "2"

    moved = put_label(client, mlp, "stable", 2).get_json()
    assert moved["version"] == 2 and moved["updated_at"] >= body["updated_at"]
    assert np.allclose(by_label(client, mlp, "stable", x), v2)
    status = client.get(f"/v1/models/{mlp['name']}").get_json()
    assert [s["version"] for s in status["model_version_status"]] == ["2", "1"]
    listed = client.get(f"/models/{mlp['id']}/labels").get_json()
    assert listed["model_id"] == mlp["id"]
    assert [(item["label"], item["version"]) for item in listed["items"]] == [
        ("canary", 2), ("stable", 2)]


def test_a_removed_label_is_gone_everywhere(app, client, unique_name):
    model = with_versions(app, client, unique_name, 1)
    assert put_label(client, model, "beta", 1).status_code == 200
    assert client.get(f"/models/{model['id']}/labels/beta").get_json()["version"] == 1
    assert client.delete(f"/models/{model['id']}/labels/beta").status_code == 204
    for response in (client.get(f"/models/{model['id']}/labels/beta"),
                     client.delete(f"/models/{model['id']}/labels/beta")):
        assert response.status_code == 404
        assert "has no label 'beta'" in response.get_json()["detail"]
    response = client.get(f"/v1/models/{model['name']}/labels/beta")
    assert response.status_code == 400
    assert response.get_json() == {"error": "Unrecognized servable version label: beta"}
    assert client.get(f"/models/{model['id']}/labels").get_json()["items"] == []


def test_labels_belong_to_one_model(app, client, unique_name):
    first = with_versions(app, client, unique_name, 1)
    other = with_versions(app, client, f"{unique_name}-other", 1)
    assert put_label(client, first, "stable", 1).status_code == 200
    assert client.get(f"/models/{other['id']}/labels/stable").status_code == 404
    assert client.get(f"/models/{other['id']}/labels").get_json()["items"] == []
    response = client.get(f"/v1/models/{other['name']}/labels/stable")
    assert response.status_code == 400
    # Nor does another tenant see them through the model's name.
    labels = LabelRegistry(app.extensions["keras_service"].database)
    assert labels.version_by_model_name(DEFAULT_TENANT, first["name"], "stable") == 1
    assert labels.version_by_model_name("another-tenant", first["name"], "stable") is None


def test_deleting_a_model_deletes_its_labels(app, client, unique_name):
    model = with_versions(app, client, unique_name, 2)
    assert put_label(client, model, "stable", 2).status_code == 200
    assert client.delete(f"/models/{model['id']}").status_code == 204
    with app.extensions["keras_service"].database.session() as session:
        assert session.scalars(select(Label).where(Label.model_id == model["id"])).all() == []
    assert client.get(f"/models/{model['id']}/labels").status_code == 404


BAD_PUTS = [
    # (id, label, body, status, words in the detail)
    ("unknown version", "stable", {"version": 99}, 404, "has no version 99"),
    ("version 0", "stable", {"version": 0}, 422, "version"),
    ("version a string", "stable", {"version": "1"}, 422, "version"),
    ("no version", "stable", {}, 422, "version"),
    ("capital letters", "Stable", {"version": 1}, 422, "lowercase letters"),
    ("starts with a digit", "1st", {"version": 1}, 422, "starting with a letter"),
    ("too long", "a" * 65, {"version": 1}, 422, "1-64"),
    ("a colon", "a:b", {"version": 1}, 422, "received 'a:b'"),
]


@pytest.mark.parametrize("label, body, status, words", [case[1:] for case in BAD_PUTS],
                         ids=[case[0] for case in BAD_PUTS])
def test_bad_label_requests_are_problems(client, mlp, label, body, status, words):
    response = client.put(f"/models/{mlp['id']}/labels/{label}", json=body)
    assert response.status_code == status, response.get_json()
    assert response.mimetype == JSON_PROBLEM
    assert words in response.get_json()["detail"]


@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_labels_of_an_unknown_model_are_404(client, method):
    url = f"/models/{new_id()}/labels" + ("" if method == "get" else "/stable")
    response = getattr(client, method)(url, json={"version": 1} if method == "put" else None)
    assert response.status_code == 404
    assert response.mimetype == JSON_PROBLEM
