"""openapi.yaml: generated from the schemas, valid OpenAPI 3.1, and covering every route."""

import re
from pathlib import Path

import yaml
from openapi_spec_validator import validate

ROOT = Path(__file__).parent.parent
NOT_DOCUMENTED = {"static", "docs_assets.swagger_ui_asset"}  # Flask's static files, Swagger UI's JS


def _flask_path(rule) -> str:
    """/models/<int:index> as /models/{index}, whatever the converter."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)


def test_committed_openapi_yaml_is_the_generated_one(app):
    committed = (ROOT / "openapi.yaml").read_text()
    assert committed == app.extensions["openapi_yaml"], (
        "openapi.yaml is out of date: run `make openapi` and commit the result")


def test_openapi_yaml_is_valid_openapi_3_1(client):
    response = client.get("/openapi.yaml")
    assert response.status_code == 200
    document = yaml.safe_load(response.get_data(as_text=True))
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_every_route_is_documented_with_its_methods(app):
    paths = yaml.safe_load(app.extensions["openapi_yaml"])["paths"]
    for rule in app.url_map.iter_rules():
        if rule.endpoint in NOT_DOCUMENTED:
            continue
        path = _flask_path(rule)
        assert path in paths, f"{path} is not in openapi.yaml"
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in paths[path], f"{method} {path} is not in openapi.yaml"


def test_request_and_response_bodies_come_from_the_schemas(app):
    document = yaml.safe_load(app.extensions["openapi_yaml"])
    create = document["paths"]["/models"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ModelCreate")
    assert create["responses"]["201"]["content"]["application/json"]["schema"][
        "$ref"].endswith("/Model")
    assert "Problem" in document["components"]["schemas"]
