"""keras-model-service: build, train, store and serve Keras models over JSON.

`create_app(config)` builds everything; nothing happens at import time. TensorFlow is never
imported here: Keras work runs in the builder process (see service/builder.py).
"""

from __future__ import annotations

import atexit

import orjson
from flask import Flask
from flask.json.provider import JSONProvider
from flask_smorest import Api

from service.config import Config

# flask-smorest serves these two itself, undocumented; the document should list every route.
# Like every route but the probes, they need a key (the 401 every other operation has).
UNAUTHORIZED = {"$ref": "#/components/responses/Unauthorized"}
DOC_ONLY_PATHS = {
    "api-docs.openapi_swagger_ui": ("/docs", {"get": {
        "tags": ["docs"], "summary": "Interactive documentation (Swagger UI)",
        "responses": {"200": {"description": "An HTML page.", "content": {"text/html": {}}},
                      "401": UNAUTHORIZED}}}),
    "api-docs.openapi_json": ("/openapi.json", {"get": {
        "tags": ["docs"], "summary": "The OpenAPI document as JSON",
        "responses": {"200": {"description": "OpenAPI 3.1",
                              "content": {"application/json": {}}}, "401": UNAUTHORIZED}}}),
}


class OrjsonProvider(JSONProvider):
    """Flask's JSON through orjson: several times faster on large arrays."""

    def dumps(self, obj, **kwargs) -> str:
        return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS).decode()

    def loads(self, s, **kwargs):
        return orjson.loads(s)


def create_app(config: Config | None = None) -> Flask:
    """Build the WSGI app: registry (migrated), artifact store, builder, routes."""
    from schemas.common import ProblemSchema
    from service import request_log
    from service.api import (
        catalog,
        datasets,
        docs,
        health,
        inference,
        jobs,
        labels,
        layers,
        metrics,
        models,
        oip,
        tfserving,
        versions,
    )
    from service.api.context import Services
    from service.api.parsing import CappedRequest
    from service.auth import guard
    from service.auth.keyring import KeyRing
    from service.builder import BuilderPool
    from service.datasets import DatasetLimits, DatasetService
    from service.errors import register_error_handlers
    from service.imports.service import ImportService
    from service.inference import InferenceService
    from service.jobs.queue import LocalJobQueue
    from service.label_service import LabelService
    from service.limits import BuildLimits, ImportLimits
    from service.model_service import ModelService
    from service.openapi import (
        BEARER_SCHEME,
        BEARER_SECURITY,
        DESCRIPTION,
        OPENAPI_SETTINGS,
        spec_to_yaml,
    )
    from service.registry import Database, JobRegistry, ModelRegistry, VersionRegistry
    from service.registry.datasets import DatasetRegistry
    from service.registry.keys import KeyRegistry
    from service.registry.labels import LabelRegistry
    from service.server import configure_logging
    from service.storage import ArtifactStore
    from service.tfserving import TFServing
    from service.training_service import TrainingService

    config = config or Config.from_env()
    configure_logging(config)
    app = Flask(__name__)
    app.request_class = CappedRequest
    app.json = OrjsonProvider(app)
    # "/models/..//x" must be a 404, not a redirect to a path the client never asked for.
    app.url_map.merge_slashes = False
    app.config.update(OPENAPI_SETTINGS, MAX_CONTENT_LENGTH=config.max_body_bytes,
                      KERAS_SERVICE=config)
    request_log.install(app, access_log_enabled=config.access_log)

    store = ArtifactStore(config.data_dir)
    store.ensure_layout()
    database = Database(config.database_url, config.data_dir)
    database.migrate(config.data_dir)
    builder = BuilderPool(config.builder_recycle_after, config.builder_timeout)
    builder.start()
    atexit.register(builder.close)
    limits = BuildLimits(max_layers=config.max_layers, max_params=config.max_params)
    model_rows, dataset_rows = ModelRegistry(database), DatasetRegistry(database)
    version_rows, label_rows = VersionRegistry(database), LabelRegistry(database)
    # One prediction path for the native API, /v1 and /v2.
    predictions = InferenceService(model_rows, version_rows, dataset_rows, store, config)
    app.extensions["keras_service"] = Services(
        config=config, database=database, store=store, builder=builder,
        models=ModelService(model_rows, store, builder, limits),
        datasets=DatasetService(dataset_rows, store, DatasetLimits.from_config(config)),
        training=TrainingService(model_rows, JobRegistry(database), dataset_rows,
                                 LocalJobQueue(), config),
        inference=predictions,
        labels=LabelService(model_rows, version_rows, label_rows),
        tfserving=TFServing(predictions, label_rows),
        imports=ImportService(model_rows, store, builder, ImportLimits.from_config(config)))
    guard.install(app, KeyRing(KeyRegistry(database), config.serving_refresh_ms / 1000),
                 open_without_keys=config.insecure or guard.is_loopback(config.host))

    class ServiceApi(Api):
        ERROR_SCHEMA = ProblemSchema

    api = ServiceApi(app, spec_kwargs={"info": {"description": DESCRIPTION},
                                       "security": [{BEARER_SCHEME: []}]})
    api.spec.components.security_scheme(BEARER_SCHEME, BEARER_SECURITY)
    for module in (models, layers, datasets, jobs, versions, inference, catalog, health, docs,
                   metrics, oip, labels, tfserving):
        api.register_blueprint(module.blp)
    app.register_blueprint(docs.assets)
    for endpoint, (path, operations) in DOC_ONLY_PATHS.items():
        rule = next(app.url_map.iter_rules(endpoint))
        api.spec.path(path=path, operations=operations, rule=rule)
    # Registered after Api(), so these replace flask-smorest's own error handler.
    register_error_handlers(app)
    app.extensions["openapi_yaml"] = spec_to_yaml(api.spec.to_dict())
    return app
