"""API keys through a real `keras-service serve` and the real `keras-service keys` command."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import requests

from tests.conftest import LESSON_LAYERS
from tests.server import ServiceProcess, free_port

pytestmark = pytest.mark.slow


def _clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("KERAS_SERVICE_")}


def keys_command(data_dir, *arguments) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "service", "keys", arguments[0],
                           "--data-dir", str(data_dir), *arguments[1:]],
                          capture_output=True, text=True, env=_clean_env(), timeout=120)


def create_key(data_dir, tenant: str, scope: str) -> str:
    result = keys_command(data_dir, "create", "--tenant", tenant, "--scopes", scope)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_with_no_keys_serve_refuses_a_public_address_and_says_why(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "service", "serve", "--host", "0.0.0.0",
         "--port", str(free_port()), "--data-dir", str(tmp_path)],
        capture_output=True, text=True, env=_clean_env(), timeout=120)
    assert result.returncode != 0
    assert "Refusing to listen on 0.0.0.0" in result.stderr
    assert "keras-service keys create" in result.stderr


def test_keys_tenants_and_revocation_across_two_workers(tmp_path):
    data_dir = tmp_path / "data"
    admin = create_key(data_dir, "acme", "admin")
    stranger = create_key(data_dir, "beta", "predict")
    service = ServiceProcess(data_dir, workers=2).start()
    try:
        def call(method, path, key=None, **kwargs):
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            return requests.request(method, service.url + path, headers=headers, timeout=60,
                                    **kwargs)

        assert call("GET", "/readyz").status_code == 200
        assert call("GET", "/models").status_code == 401
        created = call("POST", "/models", admin, json={"name": "m", "layers": LESSON_LAYERS})
        assert created.status_code == 201, created.text
        model_id = created.json()["id"]
        assert call("GET", f"/models/{model_id}", stranger).status_code == 404
        assert call("POST", "/models", stranger,
                    json={"name": "x", "layers": LESSON_LAYERS}).status_code == 403

        revoked = keys_command(data_dir, "revoke", admin)
        assert revoked.returncode == 0, revoked.stderr
        # New connections, so that both workers answer: each sees the revocation at once.
        answers = {call("GET", f"/models/{model_id}", admin).status_code for _ in range(12)}
        assert answers == {401}
        assert call("GET", "/models", stranger).status_code == 200
    finally:
        service.stop()
