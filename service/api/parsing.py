"""Request bodies: orjson, strict media types, bounded nesting, problem+json on failure.

Every blueprint of the API is a `Blueprint` from here, so every JSON body goes through the
same checks before a schema sees it, and every operation documents the errors it answers
(service/api/error_docs.py).
"""

from __future__ import annotations

import functools

import flask
import flask_smorest
import orjson
from flask import current_app
from marshmallow import RAISE
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge

from schemas.common import ProblemSchema
from service.api.error_docs import document_errors
from service.errors import MalformedRequest, UnsupportedMediaType
from service.tensors import json_kind

JSON_TYPES = ("application/json",)
PROBLEM_JSON = "application/problem+json"


class CappedRequest(flask.Request):
    """Flask's request, whose body past KERAS_SERVICE_MAX_BODY_BYTES is a 413 however sent.

    werkzeug refuses a Content-Length past the cap, but reads a body without one (chunked)
    up to the cap and returns that, as if the body ended there: a 300 MB body would be
    parsed as its first 16 MiB.
    """

    def get_data(self, cache=True, as_text=False, parse_form_data=False):
        data = getattr(self, "_cached_data", None)
        if data is None:
            if parse_form_data:
                self._load_form_data()
            data = self._read_body()
            if cache:
                self._cached_data = data
        cap = self.max_content_length
        if (self.content_length is None and cap is not None and len(data) >= cap
                and self.input_stream.read(1)):  # a byte past the cap: the body goes on
            raise RequestEntityTooLarge()
        return data.decode() if as_text else data

    def _read_body(self) -> bytes:
        """The body in one read of its declared length.

        werkzeug's readall asks for 64 KiB at a time, and gunicorn copies what it has read
        ahead (up to 1 MiB) on every such read: a 2 MB body cost ~8 ms of copying, not ~1.
        """
        length = self.content_length
        if not length:
            return self.stream.read()
        try:
            data = self.stream.read(length)
            # Short when the body comes in pieces: werkzeug's readall gets the rest.
            return data if len(data) == length else data + self.stream.read()
        except ClientDisconnected:
            raise MalformedRequest(f"The body ended before the {length:,} bytes its "
                                   "Content-Length declared.") from None


def json_depth(value, limit: int) -> int:
    """Depth of nesting of a parsed JSON value, without recursion; stops past `limit`."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)
    return deepest


def load_json_object(request) -> dict:
    """The request body as a JSON object, or a 400/415 that says what was wrong."""
    body = request.get_data(cache=True)
    mimetype = request.mimetype or ""
    if mimetype not in JSON_TYPES and not mimetype.endswith("+json"):
        if not body and not mimetype:
            raise MalformedRequest("The request has no body; expected a JSON object with "
                                   "Content-Type: application/json.")
        raise UnsupportedMediaType(
            f"Expected Content-Type: application/json; received "
            f"'{request.content_type or 'none'}'. With curl, use --json or "
            "-H 'Content-Type: application/json'.")
    limit = current_app.config["KERAS_SERVICE"].max_json_depth
    too_deep = MalformedRequest(f"The JSON body is nested deeper than {limit} levels "
                                "(KERAS_SERVICE_MAX_JSON_DEPTH).")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        if str(error).startswith("depth limit exceeded"):  # orjson's own, past 1024 levels
            raise too_deep from None
        raise MalformedRequest(f"The body is not valid JSON: {error}.") from None
    if json_depth(value, limit) > limit:
        raise too_deep
    if not isinstance(value, dict):
        raise MalformedRequest(f"Expected a JSON object; received {json_kind(value)}.")
    return value


class JsonParser(FlaskParser):
    """webargs' parser with orjson and the checks above in place of its lenient defaults."""

    # webargs drops unknown query parameters: GET /models?stat=trained would list them all.
    DEFAULT_UNKNOWN_BY_LOCATION = {**FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION,
                                   "query": RAISE, "querystring": RAISE}

    def _raw_load_json(self, req):
        return load_json_object(req)

    def load_json(self, req, schema):
        # webargs treats a non-JSON body as "missing"; here it is an error of its own.
        return self._raw_load_json(req)


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint with the parser above, documenting every error it answers.

    Problem documents are documented as application/problem+json, the media type they are
    sent with. A blueprint whose errors have another shape (the serving protocols'
    `{"error": ...}`) names its `error_schema` and `error_media_type`.
    """

    ARGUMENTS_PARSER = JsonParser()

    def __init__(self, *args, error_schema=ProblemSchema, error_media_type=PROBLEM_JSON,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.error_schema, self.error_media_type = error_schema, error_media_type
        self._prepare_doc_cbks.append(functools.partial(document_errors, blueprint=self))

    def alt_response(self, status_code, *, schema=None, content_type=None, **kwargs):
        if schema is ProblemSchema and content_type is None:
            content_type = PROBLEM_JSON
        return super().alt_response(status_code, schema=schema, content_type=content_type,
                                    **kwargs)

    def _store_endpoint_docs(self, endpoint, obj, parameters, tags, **options):
        super()._store_endpoint_docs(endpoint, obj, parameters, tags, **options)
        # The doc callbacks see an operation's doc, not its endpoint; document_errors needs
        # it to know which key scope the operation takes.
        for method, doc_info in self._docs[endpoint].items():
            if method != "parameters":
                doc_info["endpoint"] = f"{self.name}.{endpoint}"
