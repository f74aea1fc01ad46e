"""Fuzzing: schemathesis sends generated requests to every operation of openapi.yaml.

Every answer must be no server error (5xx), have a status the operation documents, and a
body of the documented media type and schema. Each operation gets FUZZ_EXAMPLES generated
requests (100 by default) besides schemathesis' boundary cases, deterministic so that a
failure reproduces. Half of those with path parameters address the real resources of
`real_ids` (a trained model, its dataset, job, version and label) instead of the generated
ids, which mostly name nothing, so that bodies and queries also reach the code behind the
lookups. A longer run by hand:

    FUZZ_EXAMPLES=1000 .venv/bin/pytest tests/test_fuzz_openapi.py
"""

from __future__ import annotations

import io
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from schemathesis.checks import (
    allow_header_conformance,
    not_a_server_error,
    positive_data_acceptance,
    unsupported_method,
)

from tests.keyed import client_with, keyed_app, new_key
from tests.trained import lesson_data, trained_lesson

pytestmark = pytest.mark.slow  # minutes, not seconds: `make test` runs it, not `make test-fast`

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100"))
FUZZ = settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                suppress_health_check=list(HealthCheck))
# Readiness probes answer 503 while something is not ready, as documented; that is their
# answer, not a server error.
READINESS = {"/readyz", "/v2/health/ready", "/v2/models/{name}/ready",
             "/v2/models/{name}/versions/{version}/ready"}

schema = schemathesis.openapi.from_path(Path(__file__).parent.parent / "openapi.yaml")


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _npz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(f"{name}.npy", data)
    return buffer.getvalue()


# Bodies schemathesis cannot make on its own: .npy arrays of any small shape and dtype (NaN
# and infinity included), rows the lesson's model takes, and bytes that are no .npy at all.
NPY = st.one_of(
    hnp.arrays(st.sampled_from(["float32", "float64", "int32", "uint8", "bool"]),
               hnp.array_shapes(min_dims=0, max_dims=3, max_side=4)).map(_npy),
    hnp.arrays("float32", st.tuples(st.integers(1, 3), st.just(100))).map(_npy),
    st.binary(max_size=256))
schemathesis.openapi.media_type("application/x-npy", NPY)
schemathesis.openapi.media_type("application/x-npz", st.one_of(
    st.dictionaries(st.sampled_from(["input_layer", "features", "extra", "../x"]), NPY,
                    max_size=3).map(_npz),
    st.binary(max_size=256)))


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory):
    # An app of its own: fuzzing creates models, datasets and jobs by the hundred.
    app = keyed_app(tmp_path_factory.mktemp("fuzz"))
    yield app
    app.extensions["keras_service"].builder.close()


@pytest.fixture(scope="module")
def key(fuzz_app):
    return new_key(fuzz_app, "default", "admin")


@pytest.fixture(scope="module")
def real_ids(fuzz_app, key):
    """A trained model with the label `stable`, a dataset, and a cancelled job: an ended
    one, so that its event stream ends."""
    client = client_with(fuzz_app, key)
    model = trained_lesson(fuzz_app, client=client)
    x, y = lesson_data(rows=8)
    dataset = client.post("/datasets", json={"x": x.tolist(), "y": y.tolist()}).get_json()
    job = client.post(f"/models/{model['id']}/fit",
                      json={"dataset": dataset["id"], "epochs": 1}).get_json()
    assert client.post(f"/jobs/{job['id']}/cancel").get_json()["state"] == "cancelled"
    assert client.put(f"/models/{model['id']}/labels/stable",
                      json={"version": 1}).status_code == 200
    return {"model_id": model["id"], "name": model["name"], "dataset_id": dataset["id"],
            "job_id": job["id"], "number": 1, "version": "1", "label": "stable"}


@pytest.fixture(scope="module")
def disposable_ids(fuzz_app, key, real_ids):
    """What PATCH and DELETE address instead of `real_ids`: a model, a dataset and a label of
    their own, so that renaming or deleting them leaves the real ones to the operations
    after them."""
    client = client_with(fuzz_app, key)
    model = client.post("/models", json={"name": "disposable", "layers": [
        {"type": "Dense", "units": 2, "input_dim": 4}]}).get_json()
    dataset = client.post("/datasets", json={"x": [[0.5]], "y": [1]}).get_json()
    assert client.put(f"/models/{real_ids['model_id']}/labels/canary",
                      json={"version": 1}).status_code == 200
    return {**real_ids, "model_id": model["id"], "dataset_id": dataset["id"],
            "label": "canary"}


@schema.parametrize()
@FUZZ
def test_operation(case, fuzz_app, key, real_ids, disposable_ids):
    if case.path_parameters and addresses_real_resources(case):
        ids = disposable_ids if case.method.upper() in ("PATCH", "DELETE") else real_ids
        case.path_parameters.update(
            {name: ids[name] for name in case.path_parameters if name in ids})
    call_and_validate(case, fuzz_app, key)


def addresses_real_resources(case) -> bool:
    """For half the cases: chosen by a hash of the generated parameters, not by a counter,
    so that Hypothesis replaying a case sees the same request."""
    return zlib.crc32(repr(sorted(case.path_parameters.items())).encode()) % 2 == 0


def call_and_validate(case, app, key: str) -> None:
    # A schema-valid request may still be refused for what a schema cannot say: a layer
    # Keras cannot build, arrays of the wrong shape for the model, an id that names nothing.
    excluded = [positive_data_acceptance]
    if case.path.startswith("/v1/"):
        # TF Serving answers any method on any /v1 path (400 "Malformed request"), so no
        # /v1 path has a 405 or a narrower Allow.
        excluded += [unsupported_method, allow_header_conformance]
    if case.path in READINESS:
        excluded.append(not_a_server_error)  # status_code_conformance still checks them
    if case.path == "/models/import":
        # Flask's Allow for /models/import lists /models/{model_id}'s methods too: the path
        # matches both rules (and GET /models/import is a 404, as for any id that is none).
        excluded.append(allow_header_conformance)
    # Loaded from the committed file, the schema knows no app; the probes some checks send
    # on their own (ignored_auth: the same request without a key) go through it.
    case.operation.schema.app = app
    # The admin key, except on the cases that leave the Authorization header out on purpose.
    negated = case.operation.schema.is_security_param_negated(case)
    case.call_and_validate(app=app, excluded_checks=excluded,
                           headers={} if negated else {"Authorization": f"Bearer {key}"})
