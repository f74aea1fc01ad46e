"""Hostile input to every route that takes a JSON body: each a documented 4xx that says why.

Deep nesting, ragged arrays, NaN, infinities, numbers past every range, strings for numbers,
empty bodies, bodies of other media types and bodies over the cap, each sent to every route
of tests/hostile.py. The checks of each route's own messages live with the route's tests;
here the guarantee is the same everywhere: a 4xx that openapi.yaml lists for the operation,
in the route's error shape, whose detail names the problem.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hostile import (
    HOSTILE,
    ROUTES,
    WRONG_MEDIA_TYPES,
    documented_statuses,
    error_detail,
    fill,
    load_document,
)

DOCUMENT = load_document(Path(__file__).parent.parent / "openapi.yaml")


@pytest.fixture(scope="module")
def ids(app, lesson):
    client = app.test_client()
    draft = client.post("/models", json={"name": f"draft-{lesson['name']}", "layers": [
        {"type": "Dense", "units": 2, "input_dim": 4}]}).get_json()
    dataset = client.post("/datasets", json={"x": [[0.5] * 100], "y": [[1.0] + [0.0] * 9]})
    return {"draft_id": draft["id"], "lesson_id": lesson["id"], "lesson_name": lesson["name"],
            "dataset_id": dataset.get_json()["id"]}


def _cases():
    for route in ROUTES:
        for hostile in HOSTILE:
            body = hostile.body(route)
            if body is not None:
                yield pytest.param(route, body, hostile.content_type, hostile.words,
                                   id=f"{route.label}: {hostile.label}")
        if not route.any_media_type:
            for media_type in WRONG_MEDIA_TYPES:
                yield pytest.param(route, route.number_body.replace("NUMBER", "1").encode(),
                                   media_type, ("Content-Type",),
                                   id=f"{route.label}: {media_type}")


def refused(client, ids, route, body, content_type):
    """Send `body` to `route`; return (status, the error's detail) after the shared checks."""
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.open(fill(route.path, ids), method=route.method, headers=headers,
                           data=fill(body.decode("utf-8", "surrogateescape"), ids).encode(
                               "utf-8", "surrogateescape"))
    assert 400 <= response.status_code < 500, response.get_data()[:300]
    assert response.status_code in documented_statuses(DOCUMENT, route.method, route.operation), (
        f"{response.status_code} is not in openapi.yaml for {route.method} {route.operation}")
    return response.status_code, error_detail(route, response.status_code, response.mimetype,
                                              response.get_json())


@pytest.mark.parametrize(("route", "body", "content_type", "words"), list(_cases()))
def test_hostile_body_is_a_documented_4xx_that_says_why(client, ids, route, body, content_type,
                                                       words):
    _, detail = refused(client, ids, route, body, content_type)
    assert any(word.lower() in detail.lower() for word in words), detail


@pytest.mark.parametrize("route", ROUTES, ids=[route.label for route in ROUTES])
def test_body_over_the_cap_is_a_413_that_names_the_setting(client, config, ids, route):
    body = b'{"x": "' + b"0" * config.max_body_bytes + b'"}'
    status, detail = refused(client, ids, route, body, "application/json")
    assert status == 413 and "KERAS_SERVICE_MAX_BODY_BYTES" in detail


ODD_NUMBERS = ["¹", "-1", "1e3", str(2**63), str(2**64), str(10**40)]
NUMBERED = [
    # (method, path as openapi.yaml writes it, path to send, headers)
    ("GET", "/models/{model_id}/versions/{number}", "/models/{lesson_id}/versions/N", {}),
    ("GET", "/models/{model_id}/versions/{number}/artifact",
     "/models/{lesson_id}/versions/N/artifact", {}),
    ("POST", "/models/{model_id}/predict", "/models/{lesson_id}/predict?version=N", {}),
    ("DELETE", "/models/{model_id}/layers/{index}", "/models/{draft_id}/layers/N", {}),
    ("GET", "/models", "/models?offset=N", {}),
    ("GET", "/v1/models/{name}/versions/{version}", "/v1/models/{lesson_name}/versions/N", {}),
    ("GET", "/v2/models/{name}/versions/{version}", "/v2/models/{lesson_name}/versions/N", {}),
    ("GET", "/v2/models/{name}/versions/{version}/ready",
     "/v2/models/{lesson_name}/versions/N/ready", {}),
    ("POST", "/v2/models/{name}/versions/{version}/infer",
     "/v2/models/{lesson_name}/versions/N/infer", {}),
    ("POST", "/v2/models/{name}/infer", "/v2/models/{lesson_name}/infer",
     {"Inference-Header-Content-Length": "N"}),
]


@pytest.mark.parametrize("number", ODD_NUMBERS)
@pytest.mark.parametrize(("method", "operation", "path", "headers"), NUMBERED,
                         ids=[f"{method} {path}" for method, _, path, _ in NUMBERED])
def test_odd_number_in_a_path_query_or_header_is_a_documented_4xx(
        client, ids, number, method, operation, path, headers):
    response = client.open(fill(path, ids).replace("N", number), method=method,
                           headers={k: v.replace("N", number) for k, v in headers.items()},
                           json={"instances": [[0.5] * 100]} if method == "POST" else None)
    assert 400 <= response.status_code < 500, response.get_data()[:300]
    statuses = documented_statuses(DOCUMENT, method, operation)
    assert response.status_code in statuses, f"{response.status_code} is not in {statuses}"
