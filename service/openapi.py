"""The OpenAPI document, generated from the blueprints' marshmallow schemas."""

from __future__ import annotations

import yaml

API_TITLE = "keras-model-service"
API_VERSION = "0.1.0"
OPENAPI_SETTINGS = {
    "API_TITLE": API_TITLE,
    "API_VERSION": API_VERSION,
    "OPENAPI_VERSION": "3.1.0",
    "OPENAPI_URL_PREFIX": "/",
    "OPENAPI_JSON_PATH": "openapi.json",
    "OPENAPI_SWAGGER_UI_PATH": "/docs",
    "OPENAPI_SWAGGER_UI_URL": "/docs/assets/",
}
DESCRIPTION = (
    "Build, train, store and serve Keras models over JSON. Every error of this API is an "
    "RFC 9457 problem document (application/problem+json)."
)

BEARER_SCHEME = "apiKey"
BEARER_SECURITY = {
    "type": "http", "scheme": "bearer",
    "description": "An API key from `keras-service keys create`. Needed on every route but "
                   "the health probes once one key exists (401 without a valid key, 403 when "
                   "its scope does not cover the operation). Another tenant's models, "
                   "datasets, jobs, versions and labels answer 404.",
}


def spec_to_yaml(spec: dict) -> str:
    return yaml.safe_dump(spec, sort_keys=False, allow_unicode=True, width=100)
