"""Request ids and the JSON access log: through the app, and on a bare Flask app."""

from __future__ import annotations

import io
import logging
import re

import orjson
import pytest
from flask import Flask, Response

from service import request_log

HEX_ID = re.compile(r"[0-9a-f]{32}")
ACCESS_FIELDS = {"time", "level", "request_id", "method", "path", "route", "status",
                 "duration_ms", "bytes", "remote_addr", "user_agent"}


@pytest.fixture
def access_lines():
    """What the access logger writes while the test runs, one parsed JSON object a line."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(request_log.JsonLineFormatter())
    logger = logging.getLogger(request_log.ACCESS_LOGGER)
    logger.addHandler(handler)
    try:
        yield lambda: [orjson.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        logger.removeHandler(handler)


def test_a_sane_request_id_comes_back(client):
    response = client.get("/healthz", headers={"X-Request-ID": "client-42_a.b"})
    assert response.headers["X-Request-ID"] == "client-42_a.b"


def test_without_a_request_id_one_is_made_for_each_request(client):
    first = client.get("/healthz").headers["X-Request-ID"]
    second = client.get("/healthz").headers["X-Request-ID"]
    assert HEX_ID.fullmatch(first) and HEX_ID.fullmatch(second) and first != second


@pytest.mark.parametrize("bad", ["x" * 129, "has space", "semi;colon", "quote\"d", "é-accent",
                                 "a/b", "{json}"])
def test_an_insane_request_id_is_replaced(client, bad):
    response = client.get("/healthz", headers={"X-Request-ID": bad})
    assert HEX_ID.fullmatch(response.headers["X-Request-ID"])


def test_the_longest_sane_request_id_is_kept(client):
    sane = "A" * 128
    assert client.get("/healthz", headers={"X-Request-ID": sane}).headers["X-Request-ID"] == sane


@pytest.mark.parametrize("method, path", [("GET", "/models/nope"), ("GET", "/no/such/route"),
                                          ("DELETE", "/healthz"), ("POST", "/models")])
def test_errors_carry_the_request_id_too(client, method, path):
    response = client.open(path, method=method, headers={"X-Request-ID": "err-1"},
                           data=b"not json", content_type="application/json")
    assert response.status_code >= 400
    assert response.headers["X-Request-ID"] == "err-1"


def test_one_json_access_line_per_request_with_every_field(client, access_lines):
    response = client.get("/models/abc123", headers={"X-Request-ID": "line-1",
                                                     "User-Agent": "tester/1"})
    assert access_lines() == []  # written once the body is sent: when the server closes it
    response.close()
    lines = [line for line in access_lines() if line["request_id"] == "line-1"]
    assert len(lines) == 1
    line = lines[0]
    assert set(line) == ACCESS_FIELDS
    assert line["level"] == "info" and re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:]{8}\.\d{3}Z",
                                                    line["time"])
    assert line["method"] == "GET" and line["path"] == "/models/abc123"
    assert line["route"] == "/models/<model_id>" and line["status"] == response.status_code
    assert line["bytes"] == len(response.data) and line["user_agent"] == "tester/1"
    assert line["remote_addr"] == "127.0.0.1" and 0 <= line["duration_ms"] < 10_000


def test_an_unknown_route_and_method_are_logged_as_unmatched_and_other(client, access_lines):
    client.get("/no/such/thing", headers={"X-Request-ID": "unmatched-1"}).close()
    client.open("/healthz", method="BREW", headers={"X-Request-ID": "brew-1"}).close()
    lines = {line["request_id"]: line for line in access_lines()}
    assert lines["unmatched-1"]["route"] == request_log.UNMATCHED_ROUTE
    assert lines["unmatched-1"]["path"] == "/no/such/thing"
    assert lines["brew-1"]["method"] == "other" and lines["brew-1"]["status"] == 405


def bare_app(access_log: bool) -> Flask:
    app = Flask(__name__)
    request_log.install(app, access_log_enabled=access_log)

    @app.get("/fail")
    def fail():
        logging.getLogger("keras_service.test").error("something broke")
        return {"error": "broken"}, 500

    return app


def test_the_access_log_can_be_turned_off(access_lines):
    response = bare_app(access_log=False).test_client().get(
        "/fail", headers={"X-Request-ID": "quiet-1"})
    response.close()
    assert response.headers["X-Request-ID"] == "quiet-1"
    assert not [line for line in access_lines() if line["request_id"] == "quiet-1"]


def test_a_stream_is_logged_when_it_starts_not_when_it_ends(access_lines):
    app = bare_app(access_log=True)

    @app.get("/events")
    def events():
        return Response(iter([b"data: 1\n\n", b"data: 2\n\n"]), mimetype="text/event-stream")

    response = app.test_client().get("/events", headers={"X-Request-ID": "stream-1"})
    lines = [line for line in access_lines() if line["request_id"] == "stream-1"]
    assert [(line["status"], line["bytes"]) for line in lines] == [(200, None)]
    response.close()
    assert len([line for line in access_lines() if line["request_id"] == "stream-1"]) == 1


def test_error_logs_written_during_a_request_carry_its_id():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("[%(request_id)s] %(message)s"))
    request_log.add_request_ids([handler])
    logger = logging.getLogger("keras_service.test")
    logger.addHandler(handler)
    try:
        bare_app(access_log=False).test_client().get("/fail",
                                                      headers={"X-Request-ID": "trace-me"})
        logger.error("outside any request")
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue().splitlines() == ["[trace-me] something broke",
                                              "[-] outside any request"]


def test_a_plain_message_on_the_access_logger_is_still_one_json_line():
    record = logging.LogRecord(request_log.ACCESS_LOGGER, logging.WARNING, __file__, 1,
                               "plain %s", ("text",), None)
    line = orjson.loads(request_log.JsonLineFormatter().format(record))
    assert line["level"] == "warning" and line["message"] == "plain text"
