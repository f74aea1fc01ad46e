"""An app with API keys, and test clients that send them."""

from __future__ import annotations

from service import create_app
from service.config import Config
from service.registry.keys import KeyRegistry


def keyed_app(data_dir, **settings):
    """An app of its own (its own registry) on `data_dir`; keys are added by `new_key`."""
    return create_app(Config.from_env(environ={}, data_dir=str(data_dir),
                                      max_body_bytes=1024 * 1024, **settings))


def new_key(app, tenant: str, scope: str) -> str:
    _, token = KeyRegistry(app.extensions["keras_service"].database).create(tenant, scope)
    return token


def client_with(app, token: str | None):
    """A test client that sends `token` as its bearer key on every request."""
    client = app.test_client()
    if token is not None:
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client
