"""Tenants: every operation of openapi.yaml, called with another tenant's key on tenant A's
model, dataset, job, version and label, answers 404 and changes nothing of A's."""

from __future__ import annotations

import pytest

from tests.conftest import LESSON_LAYERS
from tests.keyed import client_with, keyed_app, new_key
from tests.operations import ROW, fill, operations, takes_json, valid_bodies
from tests.trained import lesson_data, trained_lesson


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    app = keyed_app(tmp_path_factory.mktemp("tenants"))
    yield app
    app.extensions["keras_service"].builder.close()


@pytest.fixture(scope="module")
def owner(keyed):
    return client_with(keyed, new_key(keyed, "tenant-a", "admin"))


@pytest.fixture(scope="module")
def stranger(keyed):
    return client_with(keyed, new_key(keyed, "tenant-b", "admin"))


@pytest.fixture(scope="module")
def things(keyed, owner):
    """Tenant A's model (trained, version 1, label `stable`), dataset and queued job."""
    model = trained_lesson(keyed, client=owner)
    x, y = lesson_data(rows=8)
    dataset = owner.post("/datasets", json={"name": "a-data", "x": x.tolist(),
                                            "y": y.tolist()}).get_json()
    assert owner.put(f"/models/{model['id']}/labels/stable",
                     json={"version": 1}).status_code == 200
    job = owner.post(f"/models/{model['id']}/fit", json={"dataset": dataset["id"], "epochs": 1})
    assert job.status_code == 202, job.get_json()
    return {"model": model, "dataset": dataset, "job": job.get_json()}


def _path_values(things: dict) -> dict:
    model = things["model"]
    return {"model_id": model["id"], "dataset_id": things["dataset"]["id"],
            "job_id": things["job"]["id"], "number": "1", "version": "1", "index": "0",
            "label": "stable", "name": model["name"], "rest": f"models/{model['name']}"}


def _bodies(things: dict) -> dict:
    return valid_bodies(things["dataset"]["id"], things["model"]["inputs"][0]["name"])


def _snapshot(owner, things: dict) -> dict:
    model_id = things["model"]["id"]
    model = owner.get(f"/models/{model_id}")
    return {
        "model": (model.headers["ETag"], model.get_json()),
        "versions": owner.get(f"/models/{model_id}/versions").get_json(),
        "labels": owner.get(f"/models/{model_id}/labels").get_json(),
        "dataset": owner.get(f"/datasets/{things['dataset']['id']}").get_json(),
        "job": {key: value for key, value in owner.get(f"/jobs/{things['job']['id']}")
                .get_json().items() if key != "queue_position"},
        "artifact": owner.get(f"/models/{model_id}/versions/1/artifact").data,
    }


def test_another_tenant_gets_404_on_every_operation_and_changes_nothing(owner, stranger,
                                                                         things):
    before = _snapshot(owner, things)
    values, bodies = _path_values(things), _bodies(things)
    seen = []
    for method, path in operations():
        if "{" not in path:
            continue  # no id in it: lists and creations, checked below
        assert not takes_json(method, path) or (method, path) in bodies, \
            f"no body for {method} {path}"
        response = getattr(stranger, method)(fill(path, values),
                                             json=bodies.get((method, path)))
        if path == "/v1/{rest}":
            # The catch-all answers an unknown address the same whoever owns the name.
            unknown = getattr(stranger, method)(f"/v1/models/no-such-{method}")
            assert response.status_code == unknown.status_code != 200, path
            continue
        assert response.status_code == 404, (method, path, response.get_json())
        seen.append((method, path))
    assert len(seen) >= 40  # every id-taking route of the native API, /v1 and /v2
    assert _snapshot(owner, things) == before


def test_the_owner_gets_the_same_operations_answered(owner, things):
    """The control: the same reads and predictions with the owner's key succeed."""
    values, bodies = _path_values(things), _bodies(things)
    predicting = {key for key in bodies if key[1].endswith(("predict", "infer"))}
    for method, path in operations():
        if "{" not in path or path == "/v1/{rest}" or (
                method != "get" and (method, path) not in predicting):
            continue
        response = getattr(owner, method)(fill(path, values), json=bodies.get((method, path)))
        assert response.status_code == 200, (method, path, response.get_json())
        response.close()  # the job's event stream does not end while the job is queued


def test_lists_show_only_the_callers_own_things(owner, stranger, things):
    for path in ("/models", "/datasets", "/jobs"):
        assert stranger.get(path).get_json()["items"] == [], path
        assert owner.get(path).get_json()["total"] >= 1, path
    assert stranger.get(f"/jobs?model={things['model']['id']}").get_json()["items"] == []


def test_a_served_model_stays_invisible_to_another_tenant_after_it_was_cached(owner, stranger,
                                                                              things):
    model_id = things["model"]["id"]
    assert owner.post(f"/models/{model_id}/predict",
                      json={"instances": ROW}).status_code == 200  # loaded and cached
    assert stranger.post(f"/models/{model_id}/predict",
                         json={"instances": ROW}).status_code == 404
    assert stranger.post(f"/v1/models/{things['model']['name']}/labels/stable:predict",
                         json={"instances": ROW}).status_code == 404


def test_model_names_are_unique_per_tenant_not_across_tenants(owner, stranger, things):
    name = things["model"]["name"]
    same_name = stranger.post("/models", json={"name": name, "layers": LESSON_LAYERS})
    assert same_name.status_code == 201
    assert same_name.get_json()["id"] != things["model"]["id"]
    assert owner.post("/models", json={"name": name, "layers": LESSON_LAYERS}).status_code == 409
    # Each tenant's /v1 name resolves to its own model: A's is trained, B's is not.
    owner_status = owner.get(f"/v1/models/{name}").get_json()
    assert owner_status["model_version_status"][0]["state"] == "AVAILABLE"
    assert stranger.get(f"/v1/models/{name}").status_code == 404  # untrained: no version
