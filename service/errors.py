"""Domain exceptions, and the one place that turns them into HTTP responses.

Every error of the native API is an RFC 9457 problem document:
``{"type", "title", "status", "detail", "errors"?: [{"path", "message"}]}``.
Views and domain code raise; they never build error bodies themselves. The exception
classes import nothing from Flask, so `keras_ops` and the builder process can raise them.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

PROBLEM_TYPE_BASE = "https://keras-model-service.dev/problems/"


class ServiceError(Exception):
    """Base of every error the service answers on purpose."""

    status = 500
    title = "Internal error"
    slug = "internal"

    def __init__(self, detail: str, *, errors: list[dict] | None = None, headers=None):
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.headers = dict(headers or {})

    def __reduce__(self):
        # Keyword arguments do not survive the default pickling, and these errors cross
        # the process boundary from the builder to the web worker.
        return (_rebuild, (type(self), self.detail, self.errors, self.headers))

    def to_problem(self) -> dict:
        body = {
            "type": PROBLEM_TYPE_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors:
            body["errors"] = self.errors
        return body


def _rebuild(cls, detail, errors, headers):
    return cls(detail, errors=errors, headers=headers)


class MalformedRequest(ServiceError):
    status, title, slug = 400, "Malformed request", "malformed-request"


class Unauthorized(ServiceError):
    """No API key, or one that is unknown or revoked (WWW-Authenticate says how to send one)."""

    status, title, slug = 401, "Unauthorized", "unauthorized"


class Forbidden(ServiceError):
    """A valid key whose scope does not cover the operation (never for another tenant's
    things: those are 404, so that a key cannot tell whether they exist)."""

    status, title, slug = 403, "Forbidden", "forbidden"


class NotFound(ServiceError):
    status, title, slug = 404, "Not found", "not-found"


class WrongState(ServiceError):
    status, title, slug = 409, "Wrong state", "wrong-state"


class Conflict(ServiceError):
    status, title, slug = 409, "Conflict", "conflict"


class PreconditionFailed(ServiceError):
    status, title, slug = 412, "Precondition failed", "precondition-failed"


class PayloadTooLarge(ServiceError):
    status, title, slug = 413, "Payload too large", "payload-too-large"


class NotAcceptable(ServiceError):
    status, title, slug = 406, "Not acceptable", "not-acceptable"


class UnsupportedMediaType(ServiceError):
    status, title, slug = 415, "Unsupported media type", "unsupported-media-type"


class InvalidRequest(ServiceError):
    """A body that is well-formed JSON but not the fields a route takes: the 422 that
    schema validation gives, for routes that check their few fields by hand (predict)."""

    status, title, slug = 422, "Unprocessable Entity", "unprocessable-entity"


class InvalidSpec(ServiceError):
    """A model, layer or compile spec that Keras cannot or may not build."""

    status, title, slug = 422, "Invalid specification", "invalid-spec"


class InvalidArray(ServiceError):
    """Array data the service will not store or compute on: ragged, non-numeric, non-finite,
    out of its dtype's range, or a file that is not a plain numeric .npy."""

    status, title, slug = 422, "Invalid array", "invalid-array"


class InvalidModelFile(ServiceError):
    """An uploaded model file that is not a `.keras` archive this service reads: broken,
    with unexpected or oversized members, or parts that are not what Keras writes."""

    status, title, slug = 422, "Invalid model file", "invalid-model-file"


class LimitExceeded(ServiceError):
    """A request within the syntax but past one of the configured caps (named in detail)."""

    status, title, slug = 422, "Limit exceeded", "limit-exceeded"


class QueueFull(ServiceError):
    """Too many jobs queued: retry later (Retry-After says when)."""

    status, title, slug = 429, "Too many queued jobs", "queue-full"


class ArtifactCorrupt(ServiceError):
    """A version's file is missing, altered or unreadable: the server's fault, not the client's."""

    status, title, slug = 500, "Artifact corrupt", "artifact-corrupt"


class Busy(ServiceError):
    status, title, slug = 503, "Service busy", "busy"


def not_found(kind: str, ident: str) -> NotFound:
    return NotFound(f"No {kind} with id '{ident}'.")


def register_error_handlers(app) -> None:
    """Answer every error of `app` as problem+json, without a stack trace."""
    from flask import make_response
    from werkzeug.exceptions import HTTPException

    def respond(body: dict, status: int, headers: dict | None = None):
        from orjson import dumps

        response = make_response(dumps(body), status)
        response.mimetype = "application/problem+json"
        for key, value in (headers or {}).items():
            response.headers[key] = value
        return response

    @app.errorhandler(ServiceError)
    def handle_service_error(error: ServiceError):
        return respond(error.to_problem(), error.status, error.headers)

    @app.errorhandler(HTTPException)
    def handle_http_exception(error: HTTPException):
        status = error.code or 500
        if status == PayloadTooLarge.status:  # werkzeug's body cap: one problem type for 413
            return handle_service_error(PayloadTooLarge(_http_detail(error)))
        body = {
            "type": PROBLEM_TYPE_BASE + error.name.lower().replace(" ", "-"),
            "title": error.name,
            "status": status,
            "detail": _http_detail(error),
        }
        errors = _validation_errors(getattr(error, "data", None))
        if errors:
            body["errors"] = errors
            body["detail"] = "; ".join(f"{e['path']}: {e['message']}" for e in errors)
        allow = {"Allow": error.valid_methods} if getattr(error, "valid_methods", None) else {}
        return respond(body, status, {k: ", ".join(v) for k, v in allow.items()})

    @app.errorhandler(Exception)
    def handle_unexpected(error: Exception):
        log.exception("unhandled error")
        return respond(ServiceError("The server failed to answer; the error is logged.")
                       .to_problem(), 500)


def register_protocol_error_handlers(blueprint) -> None:
    """Answer errors of `blueprint` as `{"error": "..."}`, the shape of the serving protocols.

    TensorFlow Serving's REST API (/v1) and the Open Inference Protocol (/v2) both answer
    errors that way; the status codes stay the ones of the native API's table. Registered
    on a blueprint, these take precedence over the app's problem+json handlers for its
    routes only.
    """
    from flask import jsonify
    from werkzeug.exceptions import HTTPException

    def respond(message: str, status: int, headers=None):
        response = jsonify({"error": message})
        response.status_code = status
        for key, value in (headers or {}).items():
            response.headers[key] = value
        return response

    @blueprint.errorhandler(ServiceError)
    def handle_service_error(error: ServiceError):
        return respond(error.detail, error.status, error.headers)

    @blueprint.errorhandler(HTTPException)
    def handle_http_exception(error: HTTPException):
        errors = _validation_errors(getattr(error, "data", None))
        message = ("; ".join(f"{e['path']}: {e['message']}" for e in errors) if errors
                   else _http_detail(error))
        return respond(message, error.code or 500)


def _http_detail(error) -> str:
    if error.code == 413:
        from flask import current_app

        limit = current_app.config.get("MAX_CONTENT_LENGTH")
        return (f"The request body is larger than the cap of {limit:,} bytes "
                "(KERAS_SERVICE_MAX_BODY_BYTES).")
    if error.code == 404:
        return "No such route. GET /openapi.yaml lists every route."
    return error.description or error.name


def _validation_errors(data) -> list[dict]:
    """Flatten marshmallow's nested messages (from flask-smorest) into [{path, message}]."""
    if not isinstance(data, dict) or "messages" not in data:
        return []
    found: list[dict] = []

    def walk(node, path):
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{path}.{key}" if path else str(key))
        elif isinstance(node, list) and all(isinstance(m, str) for m in node):
            found.extend({"path": path, "message": message} for message in node)
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{path}[{index}]")
        else:
            found.append({"path": path, "message": str(node)})

    messages = data["messages"]
    # webargs nests by location ("json", "query"); the path inside the body is what users need.
    for location, inner in messages.items() if isinstance(messages, dict) else []:
        walk(inner, "" if location == "json" else location)
    return found
