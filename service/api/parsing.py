"""Request bodies: orjson, strict media types, bounded nesting, problem+json on failure.

Every blueprint of the API is a `Blueprint` from here, so every JSON body goes through the
same checks before a schema sees it.
"""

from __future__ import annotations

import flask_smorest
import orjson
from flask import current_app
from webargs.flaskparser import FlaskParser

from service.errors import MalformedRequest, UnsupportedMediaType
from service.tensors import json_kind

JSON_TYPES = ("application/json",)


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
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise MalformedRequest(f"The body is not valid JSON: {error}.") from None
    limit = current_app.config["KERAS_SERVICE"].max_json_depth
    if json_depth(value, limit) > limit:
        raise MalformedRequest(f"The JSON body is nested deeper than {limit} levels "
                               "(KERAS_SERVICE_MAX_JSON_DEPTH).")
    if not isinstance(value, dict):
        raise MalformedRequest(f"Expected a JSON object; received {json_kind(value)}.")
    return value


class JsonParser(FlaskParser):
    """webargs' parser with orjson and the checks above in place of its lenient defaults."""

    def _raw_load_json(self, req):
        return load_json_object(req)

    def load_json(self, req, schema):
        # webargs treats a non-JSON body as "missing"; here it is an error of its own.
        return self._raw_load_json(req)


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = JsonParser()

