"""Shared fixtures: one app (and one builder process) per test session, temp data dirs."""

from __future__ import annotations

import uuid

import pytest

from service import create_app
from service.config import Config


@pytest.fixture(scope="session")
def config(tmp_path_factory) -> Config:
    data_dir = tmp_path_factory.mktemp("data")
    return Config.from_env(environ={}, data_dir=str(data_dir), max_body_bytes=1024 * 1024)


@pytest.fixture(scope="session")
def app(config):
    app = create_app(config)
    yield app
    app.extensions["keras_service"].builder.close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def unique_name():
    return f"m-{uuid.uuid4().hex[:12]}"


LESSON_LAYERS = [
    {"type": "Dense", "units": 100, "input_dim": 100},
    {"type": "Activation", "activation": "relu"},
    {"type": "Dense", "units": 10},
    {"type": "Activation", "activation": "softmax"},
]


@pytest.fixture(scope="module")
def lesson(app):
    """The lesson's MLP with one trained version, made once per test module."""
    from tests.trained import trained_lesson

    return trained_lesson(app)


@pytest.fixture(scope="module")
def two_inputs(app):
    """The two-input, two-output functional model with one trained version."""
    from tests.trained import trained_two_inputs

    return trained_two_inputs(app)
