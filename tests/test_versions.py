"""Versions over HTTP: list, read, download the .keras file, and 404 for anything else."""

from __future__ import annotations

import hashlib
import uuid

import keras
import numpy as np
import pytest

from service.registry import ModelRegistry
from service.registry.tables import Tenant, Version
from service.storage import new_id
from tests.conftest import LESSON_LAYERS
from tests.trained import LESSON_COMPILE, compiled_model, lesson_data, train_version

JSON_PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def trained(app):
    """The lesson's model, fitted twice: versions 1 and 2."""
    client = app.test_client()
    model = compiled_model(client, f"versions-{uuid.uuid4().hex[:8]}", LESSON_COMPILE,
                           layers=LESSON_LAYERS)
    x, y = lesson_data()
    train_version(app, model["id"], x, y)
    train_version(app, model["id"], x, y)
    return client.get(f"/models/{model['id']}").get_json()


def test_versions_are_listed_oldest_first_with_their_files(client, config, trained):
    response = client.get(f"/models/{trained['id']}/versions")
    assert response.status_code == 200
    body = response.get_json()
    assert body["model_id"] == trained["id"]
    assert [item["number"] for item in body["items"]] == [1, 2]
    for item in body["items"]:
        path = config.data_dir / "models" / trained["id"] / f"v{item['number']}.keras"
        assert item["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert item["bytes"] == path.stat().st_size
        assert set(item["metrics"]) >= {"loss", "accuracy"}
        assert item["job_id"] is None and item["created_at"].endswith("+00:00")
    assert trained["version"] == 2 and trained["state"] == "trained"


def test_one_version_reads_as_listed(client, trained):
    listed = client.get(f"/models/{trained['id']}/versions").get_json()["items"]
    response = client.get(f"/models/{trained['id']}/versions/1")
    assert response.status_code == 200
    assert response.get_json() == listed[0]


def test_a_model_without_versions_lists_none(client, unique_name):
    model = compiled_model(client, unique_name, LESSON_COMPILE, layers=LESSON_LAYERS)
    body = client.get(f"/models/{model['id']}/versions").get_json()
    assert body == {"model_id": model["id"], "items": []}
    assert client.get(f"/models/{model['id']}/versions/1").status_code == 404


@pytest.mark.parametrize("path", [
    "/models/{id}/versions/3",
    "/models/{id}/versions/3/artifact",
    "/models/{id}/versions/0",
    "/models/{unknown}/versions",
    "/models/{unknown}/versions/1",
    "/models/{unknown}/versions/1/artifact",
    "/models/not-an-id/versions",
    "/models/{id}/versions/one",
    "/models/{id}/versions/-1/artifact",
])
def test_unknown_models_and_versions_are_404_problems(client, trained, path):
    response = client.get(path.format(id=trained["id"], unknown=uuid.uuid4().hex))
    assert response.status_code == 404
    assert response.mimetype == JSON_PROBLEM
    assert response.get_json()["status"] == 404


def test_another_tenants_model_and_versions_are_not_found(app, client, trained):
    services = app.extensions["keras_service"]
    with services.database.transaction() as session:
        if session.get(Tenant, "other") is None:
            session.add(Tenant(id="other"))
    other = ModelRegistry(services.database).create(
        "other", name=f"theirs-{uuid.uuid4().hex[:8]}", type="sequential", state="trained",
        spec={}, version=1, artifact="v1.keras")
    with services.database.transaction() as session:
        session.add(Version(id=new_id(), tenant_id="other", model_id=other.id, number=1,
                            sha256="0" * 64, bytes=1, metrics={}))
    for path in ("/versions", "/versions/1", "/versions/1/artifact"):
        response = client.get(f"/models/{other.id}{path}")
        assert response.status_code == 404, path
        assert other.id in response.get_json()["detail"]


def test_artifact_downloads_the_file_with_its_checksum_as_etag(client, config, trained):
    path = config.data_dir / "models" / trained["id"] / "v2.keras"
    version = client.get(f"/models/{trained['id']}/versions/2").get_json()
    response = client.get(f"/models/{trained['id']}/versions/2/artifact")
    assert response.status_code == 200
    assert response.data == path.read_bytes()
    assert response.headers["ETag"] == f'"{version["sha256"]}"'
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="{trained["name"]}-v2.keras"')
    assert response.mimetype == "application/octet-stream"
    assert int(response.headers["Content-Length"]) == version["bytes"]

    again = client.get(f"/models/{trained['id']}/versions/2/artifact",
                       headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""
    part = client.get(f"/models/{trained['id']}/versions/2/artifact",
                      headers={"Range": "bytes=0-3"})
    assert part.status_code == 206 and part.data == path.read_bytes()[:4]


def test_downloaded_file_loads_in_keras_and_predicts_as_the_service(client, tmp_path, trained):
    response = client.get(f"/models/{trained['id']}/versions/1/artifact")
    downloaded = tmp_path / "downloaded.keras"
    downloaded.write_bytes(response.data)
    model = keras.saving.load_model(downloaded, safe_mode=True)
    x, _ = lesson_data(rows=5, seed=7)
    answer = client.post(f"/models/{trained['id']}/predict",
                         json={"instances": x.tolist(), "version": 1})
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["model_version"] == 1
    served = np.array(answer.get_json()["predictions"])
    assert np.allclose(served, model.predict(x, verbose=0), atol=1e-6)


def test_versions_are_documented_with_a_binary_download(app):
    import yaml

    paths = yaml.safe_load(app.extensions["openapi_yaml"])["paths"]
    assert paths["/models/{model_id}/versions"]["get"]["responses"]["200"]
    download = paths["/models/{model_id}/versions/{number}/artifact"]["get"]["responses"]
    assert download["200"]["content"]["application/octet-stream"]["schema"] == {
        "type": "string", "format": "binary"}
    assert "404" in download
