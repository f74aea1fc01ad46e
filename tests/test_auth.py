"""API keys and scopes: the key format, the registry, the check before every view, the CLI."""

from __future__ import annotations

import logging

import pytest
from click.testing import CliRunner

from service.__main__ import cli
from service.auth.exposure import check_exposure
from service.auth.scopes import PUBLIC, needed_scope
from service.auth.tokens import new_token, scope_covers, secret_matches, split_token
from service.config import Config
from service.errors import InvalidRequest, NotFound
from service.registry.keys import KeyRegistry
from tests.conftest import LESSON_LAYERS
from tests.keyed import client_with, keyed_app, new_key
from tests.trained import lesson_data, trained_lesson

ROW = lesson_data(rows=1)[0].tolist()


# --- the key format ------------------------------------------------------------------------

def test_a_new_token_splits_into_its_id_and_a_secret_that_matches_the_stored_hash():
    key_id, token, stored = new_token()
    assert token.startswith(f"ks_{key_id}_")
    found_id, secret = split_token(token)
    assert found_id == key_id and secret_matches(secret, stored)
    assert not secret_matches(secret + "x", stored)
    assert not secret_matches(secret, None)
    assert stored not in token and secret not in stored


@pytest.mark.parametrize("token", ["", "ks_", "ks_abc_def", "Bearer ks_x", "ks_" + "0" * 32,
                                   "ks_" + "g" * 32 + "_" + "a" * 43, "x" * 200])
def test_malformed_tokens_do_not_split(token):
    assert split_token(token) is None


def test_each_scope_covers_the_ones_below_it_and_none_above():
    assert scope_covers("admin", "train") and scope_covers("train", "predict")
    assert scope_covers("predict", "predict")
    assert not scope_covers("predict", "train") and not scope_covers("train", "admin")


# --- the registry --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    app = keyed_app(tmp_path_factory.mktemp("keyed"))
    yield app
    app.extensions["keras_service"].builder.close()


@pytest.fixture(scope="module")
def keys(keyed):
    return {scope: new_key(keyed, "acme", scope) for scope in ("predict", "train", "admin")}


@pytest.fixture(scope="module")
def registry(keyed):
    return KeyRegistry(keyed.extensions["keras_service"].database)


@pytest.fixture(scope="module")
def model(keyed, keys):
    return trained_lesson(keyed, client=client_with(keyed, keys["admin"]))


def test_creating_a_key_creates_its_tenant_and_lists_it_without_its_secret(registry):
    row, token = registry.create("new-tenant", "train", "ci runner")
    listed = {key.id: key for key in registry.list()}
    assert listed[row.id].tenant_id == "new-tenant" and listed[row.id].scope == "train"
    assert listed[row.id].description == "ci runner"
    assert split_token(token)[1] not in repr(vars(listed[row.id]))


@pytest.mark.parametrize("tenant, scope", [("Upper", "admin"), ("", "admin"), ("../x", "admin"),
                                           ("a" * 65, "admin"), ("ok", "root"), ("ok", "")])
def test_a_bad_tenant_or_scope_is_refused(registry, tenant, scope):
    with pytest.raises(InvalidRequest):
        registry.create(tenant, scope)


def test_revoking_an_unknown_key_is_not_found(registry):
    with pytest.raises(NotFound):
        registry.revoke("0" * 32)


# --- the check before every view -----------------------------------------------------------

@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"])
def test_probes_need_no_key(keyed, keys, path):
    assert keyed.test_client().get(path).status_code == 200


@pytest.mark.parametrize("header", [None, "", "Basic dXNlcjpwYXNz", "Bearer", "Bearer  ",
                                    "Bearer not-a-key", "Token ks_" + "0" * 32 + "_" + "a" * 43,
                                    "Bearer ks_" + "0" * 32 + "_" + "a" * 43])
def test_a_missing_or_invalid_key_is_401_with_a_challenge(keyed, keys, header):
    client = keyed.test_client()
    headers = {} if header is None else {"Authorization": header}
    response = client.get("/models", headers=headers)
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="keras-service"')
    assert "Bearer <key>" in response.get_json()["detail"] or \
        "not valid" in response.get_json()["detail"]


def test_the_right_key_id_with_a_wrong_secret_is_401(keyed, keys):
    key_id = split_token(keys["admin"])[0]
    forged = f"ks_{key_id}_{'A' * 43}"
    assert client_with(keyed, forged).get("/models").status_code == 401


@pytest.mark.parametrize("path", ["/v1/models/anything", "/v2/models/anything"])
def test_the_serving_protocols_answer_401_in_their_own_error_shape(keyed, keys, path):
    response = keyed.test_client().get(path)
    assert response.status_code == 401
    assert set(response.get_json()) == {"error"}


def test_a_predict_key_reads_and_predicts_but_does_not_build(keyed, keys, model):
    client = client_with(keyed, keys["predict"])
    assert client.get("/models").status_code == 200
    assert client.get(f"/models/{model['id']}").status_code == 200
    response = client.post(f"/models/{model['id']}/predict", json={"instances": ROW})
    assert response.status_code == 200, response.get_json()
    assert client.post(f"/v1/models/{model['name']}:predict",
                       json={"instances": ROW}).status_code == 200
    refused = client.post("/models", json={"name": "nope", "layers": LESSON_LAYERS})
    assert refused.status_code == 403
    assert "'predict' scope" in refused.get_json()["detail"]
    assert "needs 'train'" in refused.get_json()["detail"]
    assert client.post(f"/models/{model['id']}/layers",
                       json={"type": "Dense", "units": 2}).status_code == 403
    assert client.get("/metrics").status_code == 403


def test_a_train_key_builds_but_does_not_delete_or_move_labels(keyed, keys, model):
    client = client_with(keyed, keys["train"])
    created = client.post("/models", json={"name": "train-built", "layers": LESSON_LAYERS})
    assert created.status_code == 201
    assert client.delete(f"/models/{created.get_json()['id']}").status_code == 403
    assert client.put(f"/models/{model['id']}/labels/stable",
                      json={"version": 1}).status_code == 403
    assert client.get(f"/models/{created.get_json()['id']}").status_code == 200


def test_an_admin_key_deletes_moves_labels_and_reads_metrics(keyed, keys, model):
    client = client_with(keyed, keys["admin"])
    created = client.post("/models", json={"name": "admin-built", "layers": LESSON_LAYERS})
    assert client.delete(f"/models/{created.get_json()['id']}").status_code == 204
    assert client.put(f"/models/{model['id']}/labels/stable",
                      json={"version": 1}).status_code == 200
    assert client.get("/metrics").status_code == 200


def test_a_revoked_key_is_refused_on_its_next_request(keyed, registry):
    token = new_key(keyed, "acme", "predict")
    client = client_with(keyed, token)
    assert client.get("/models").status_code == 200
    registry.revoke(token)  # a full token names its key too
    assert client.get("/models").status_code == 401


def test_with_no_keys_the_loopback_service_is_open_as_the_default_tenant(client):
    response = client.get("/models")
    assert response.status_code == 200


def test_with_no_keys_a_service_beyond_loopback_refuses_every_request(tmp_path):
    app = keyed_app(tmp_path, host="0.0.0.0")
    try:
        response = app.test_client().get("/models")
        assert response.status_code == 401
        assert "No API key is active" in response.get_json()["detail"]
        assert app.test_client().get("/healthz").status_code == 200
    finally:
        app.extensions["keras_service"].builder.close()


# --- the scope table -----------------------------------------------------------------------

def test_every_endpoint_the_scope_table_names_exists(keyed):
    from service.auth import scopes

    endpoints = {rule.endpoint for rule in keyed.url_map.iter_rules()}
    named = (set(PUBLIC) | set(scopes._PREDICT_POSTS)
             | {endpoint for _, endpoint in scopes._ADMIN})
    assert named <= endpoints, named - endpoints


def test_writes_need_train_unless_named_and_reads_need_predict():
    assert needed_scope("POST", "models.Models") == "train"
    assert needed_scope("POST", "some.NewRoute") == "train"
    assert needed_scope("GET", "some.NewRoute") == "predict"
    assert needed_scope("POST", "inference.Predict") == "predict"
    assert needed_scope("POST", "tfserving.predict_label") == "predict"
    assert needed_scope("DELETE", "layers.LayerByIndex") == "train"
    assert needed_scope("DELETE", "models.ModelById") == "admin"


# --- start-up ------------------------------------------------------------------------------

def _config(tmp_path, **settings) -> Config:
    return Config.from_env(environ={}, data_dir=str(tmp_path), **settings)


def test_no_keys_and_a_public_host_refuse_to_start(tmp_path):
    with pytest.raises(SystemExit, match="Refusing to listen on 0.0.0.0:8000 with no API keys"):
        check_exposure(_config(tmp_path, host="0.0.0.0"))


def test_no_keys_on_loopback_or_insecure_start_and_say_so(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="keras_service"):
        check_exposure(_config(tmp_path))
        check_exposure(_config(tmp_path, host="0.0.0.0", insecure=True))
    assert "listening on loopback only" in caplog.text
    assert "INSECURE" in caplog.text


def test_a_key_lets_a_public_host_start(tmp_path, caplog):
    result = CliRunner().invoke(cli, ["keys", "create", "--data-dir", str(tmp_path),
                                      "--tenant", "acme", "--scopes", "predict"])
    assert result.exit_code == 0, result.output
    with caplog.at_level(logging.INFO, logger="keras_service"):
        check_exposure(_config(tmp_path, host="0.0.0.0"))
    assert "1 API key(s) active" in caplog.text


# --- the command line ----------------------------------------------------------------------

def test_keys_create_prints_the_key_last_and_stores_only_its_hash(tmp_path):
    runner = CliRunner()
    created = runner.invoke(cli, ["keys", "create", "--data-dir", str(tmp_path),
                                  "--tenant", "acme", "--scopes", "train",
                                  "--description", "laptop"])
    assert created.exit_code == 0, created.output
    token = created.output.strip().splitlines()[-1]
    key_id, secret = split_token(token)
    registry_bytes = b"".join(path.read_bytes() for path in tmp_path.glob("registry.sqlite3*"))
    assert secret.encode() not in registry_bytes

    listed = runner.invoke(cli, ["keys", "list", "--data-dir", str(tmp_path)])
    assert key_id in listed.output and "acme\ttrain" in listed.output
    assert "laptop" in listed.output and secret not in listed.output

    revoked = runner.invoke(cli, ["keys", "revoke", "--data-dir", str(tmp_path), key_id])
    assert revoked.exit_code == 0 and "Revoked" in revoked.output
    assert key_id not in runner.invoke(cli, ["keys", "list", "--data-dir",
                                             str(tmp_path)]).output
    assert key_id in runner.invoke(cli, ["keys", "list", "--all", "--data-dir",
                                         str(tmp_path)]).output


@pytest.mark.parametrize("arguments, message", [
    (["create", "--tenant", "Bad Name", "--scopes", "admin"], "tenant 'Bad Name'"),
    (["create", "--tenant", "acme", "--scopes", "root"], "'root' is not one of"),
    (["revoke", "0" * 32], "No API key with id"),
])
def test_keys_commands_refuse_bad_arguments_clearly(tmp_path, arguments, message):
    result = CliRunner().invoke(cli, ["keys", *arguments[:1], "--data-dir", str(tmp_path),
                                      *arguments[1:]])
    assert result.exit_code != 0
    assert message in result.output
