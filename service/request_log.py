"""Per-request bookkeeping: a request id, HTTP metrics, one JSON access log line.

Every response carries `X-Request-ID`: the client's own when it is sane (at most 128
characters of [A-Za-z0-9._-], so it is safe in logs and headers), else a fresh uuid4 hex.
The same id is on the access log line and on every other log record written while the
request is served (see RequestIdFilter), so an error can be traced to its request.

This runs on every request, predict's ~1 ms fast path included, so it stays small (measured
by bench/request_overhead.py): state in the WSGI environ rather than `g`, no parsing of the
user agent, metric children cached per (method, route, status); and the access line and the
HTTP metrics are written once the response has been sent, when the server closes it (a
stream's when it starts), so no client waits for them.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid

import orjson
from flask import has_request_context, request

from service import metrics

ACCESS_LOGGER = "keras_service.access"
REQUEST_ID_HEADER = "X-Request-ID"
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
# Routing failures (404, 405) have no rule; one label for them all keeps cardinality bounded.
UNMATCHED_ROUTE = "<unmatched>"
STARTED_KEY, REQUEST_ID_KEY = "keras_service.started", "keras_service.request_id"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

access_log = logging.getLogger(ACCESS_LOGGER)


def request_id_from(header: str | None) -> str:
    """The client's id when it is sane, else a new one."""
    if header and SANE_REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


def install(app, *, access_log_enabled: bool) -> None:
    """Give each request of `app` an id, count and time it, and log it as one JSON line."""
    if access_log_enabled:
        configure_access_logger()

    @app.before_request
    def start_request():
        # State in the WSGI environ: one context-local lookup here and one in finish_request,
        # where `g` and `request` would each cost one per attribute.
        environ = request.environ
        environ[STARTED_KEY] = time.perf_counter()
        environ[REQUEST_ID_KEY] = request_id_from(environ.get("HTTP_X_REQUEST_ID"))

    @app.after_request
    def finish_request(response):
        current = request._get_current_object()
        environ = current.environ
        # Absent when an error was raised before start_request ran.
        started = environ.get(STARTED_KEY)
        elapsed = time.perf_counter() - started if started is not None else 0.0
        request_id = environ.get(REQUEST_ID_KEY) or request_id_from(None)
        response.headers[REQUEST_ID_HEADER] = request_id
        method = environ.get("REQUEST_METHOD", "")
        method = method if method in METHODS else "other"
        rule = current.url_rule
        route = rule.rule if rule is not None else UNMATCHED_ROUTE
        status = response.status_code
        line = {
            "request_id": request_id, "method": method, "path": current.path,
            "route": route, "status": status, "duration_ms": int(elapsed * 1e6) / 1000,
            "bytes": response.content_length, "remote_addr": environ.get("REMOTE_ADDR"),
            "user_agent": environ.get("HTTP_USER_AGENT")} if access_log_enabled else None

        def record() -> None:
            metrics.observe_request(method, route, status, elapsed)
            if line is not None:
                access_log.info(line)

        if response.is_streamed:
            record()  # a stream's line says when it started, not when it ends
        else:
            # Once the body is sent (the server closes the response): the client does not
            # wait for the line and the metrics, a tenth of a one-row predict.
            response.call_on_close(record)
        return response


class JsonLineFormatter(logging.Formatter):
    """A record whose message is a dict, as one JSON line with its time and level first."""

    _second, _stamp = -1, ""

    def format(self, record: logging.LogRecord) -> str:
        created = record.created
        if int(created) != self._second:  # strftime once a second, not once a line
            self._second = int(created)
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
        line = {"time": f"{self._stamp}.{int(created * 1000) % 1000:03d}Z",
                "level": record.levelname.lower()}
        if isinstance(record.msg, dict):
            line.update(record.msg)
        else:
            line["message"] = record.getMessage()
        return orjson.dumps(line).decode()


def configure_access_logger() -> None:
    """Access lines go to stderr as bare JSON, not through the root's text format."""
    if any(getattr(handler, "_keras_service_access", False) for handler in access_log.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLineFormatter())
    handler._keras_service_access = True
    access_log.addHandler(handler)
    access_log.setLevel(logging.INFO)  # on or off by KERAS_SERVICE_ACCESS_LOG, not LOG_LEVEL
    access_log.propagate = False


class RequestIdFilter(logging.Filter):
    """Stamps each record with the id of the request being served ("-" outside requests)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = (request.environ.get(REQUEST_ID_KEY, "-") if has_request_context()
                             else "-")
        return True


def add_request_ids(handlers) -> None:
    """Let `handlers` (the root's) write `%(request_id)s`."""
    for handler in handlers:
        if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
            handler.addFilter(RequestIdFilter())
