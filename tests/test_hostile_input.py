"""Hostile input to every route that takes a body: each a documented 4xx that says why.

Deep nesting, ragged arrays, NaN, infinities, numbers past every range, strings for numbers,
empty bodies, bodies of other media types and bodies over the cap, each sent to every route
of tests/hostile.py, and odd numbers where versions, indexes and offsets go. The checks of
each route's own messages live with the route's tests; here the guarantee is the same
everywhere: a 4xx that openapi.yaml lists for the operation, in the operation's error shape,
whose detail names the problem.
"""

from __future__ import annotations

import io

import pytest

from tests.hostile import ROUTES, Sent, check_refusal, hostile_requests


@pytest.fixture(scope="module")
def ids(app, lesson):
    client = app.test_client()
    draft = client.post("/models", json={"name": f"draft-{lesson['name']}", "layers": [
        {"type": "Dense", "units": 2, "input_dim": 4}]}).get_json()
    dataset = client.post("/datasets", json={"x": [[0.5] * 100], "y": [[1.0] + [0.0] * 9]})
    return {"draft_id": draft["id"], "lesson_id": lesson["id"], "lesson_name": lesson["name"],
            "dataset_id": dataset.get_json()["id"]}


@pytest.mark.parametrize("sent", hostile_requests(), ids=lambda sent: sent.label)
def test_hostile_request_is_a_documented_4xx_that_says_why(client, ids, sent):
    path, body = sent.filled(ids)
    response = client.open(path, method=sent.method, headers=sent.headers, data=body)
    check_refusal(sent, response.status_code, response.mimetype, response.get_json())


@pytest.mark.parametrize("streamed", [False, True], ids=["Content-Length", "chunked"])
@pytest.mark.parametrize("route", ROUTES, ids=[route.label for route in ROUTES])
def test_body_over_the_cap_is_a_413_that_names_the_setting(client, config, ids, route,
                                                          streamed):
    sent = Sent(route.label, route.method, route.operation, route.path,
                b'{"x": "' + b"0" * config.max_body_bytes + b'"}',
                {"Content-Type": "application/json"}, ("KERAS_SERVICE_MAX_BODY_BYTES",))
    path, body = sent.filled(ids)
    # Chunked, as gunicorn hands such a body to the app: no Content-Length to refuse early.
    sending = ({"input_stream": io.BytesIO(body), "environ_overrides": {
        "wsgi.input_terminated": True, "HTTP_TRANSFER_ENCODING": "chunked"}}
               if streamed else {"data": body})
    response = client.open(path, method=sent.method, headers=sent.headers, **sending)
    assert response.status_code == 413
    check_refusal(sent, response.status_code, response.mimetype, response.get_json())
