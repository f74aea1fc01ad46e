"""The errors every operation documents without saying so itself.

flask-smorest documents one catch-all `default` response; here each status an operation
may answer is listed instead, so that a client (and tests/test_fuzz_openapi.py) can tell a
documented status from an undocumented one: the errors of a JSON body (from
service/api/parsing.py and the body size cap) and those of the key check
(service/auth/guard.py), in the error shape of the operation's blueprint.
"""

from __future__ import annotations

import contextlib

from apispec.exceptions import DuplicateComponentNameError

from service.auth.scopes import PUBLIC, needed_scope

# status -> (name of the shared response in the document, its description)
JSON_BODY_ERRORS = {
    400: ("MalformedBody", "The body is not JSON, not an object, or nested too deep."),
    413: ("BodyTooLarge", "The body is larger than KERAS_SERVICE_MAX_BODY_BYTES."),
    415: ("UnsupportedBodyType", "The body is not application/json."),
    422: ("InvalidArguments", "The body or the query does not match the schema; `errors` "
                              "says where."),
}
KEY_ERRORS = {
    401: ("Unauthorized", "No valid API key (`Authorization: Bearer <key>`), once the "
                          "service has keys."),
    403: ("Forbidden", "The key's scope does not cover this operation."),
}
CHALLENGE = {"WWW-Authenticate": {"description": "How to send a key.",
                                  "schema": {"type": "string"}}}


def document_errors(doc: dict, doc_info: dict, *, blueprint, spec, method: str, **_) -> dict:
    """A flask-smorest doc callback: `doc`, its responses completed as above."""
    responses = doc.setdefault("responses", {})
    responses.pop("default", None)
    if isinstance(responses.get(422), str):  # flask-smorest's own, as application/json
        del responses[422]
    if "requestBody" in doc:  # from @blp.arguments: a JSON body
        errors = dict(JSON_BODY_ERRORS)
    else:
        errors = {422: JSON_BODY_ERRORS[422]} if "arguments" in doc_info else {}
    endpoint = doc_info["endpoint"]
    if endpoint not in PUBLIC:
        errors[401] = KEY_ERRORS[401]
        if needed_scope(method.upper(), endpoint) != "predict":  # every key may predict
            errors[403] = KEY_ERRORS[403]
    for status, (name, description) in errors.items():
        responses.setdefault(status, _shared(spec, blueprint, status, name, description))
    return doc


def _shared(spec, blueprint, status: int, name: str, description: str) -> str:
    """A response registered once in the document's components, in `blueprint`'s error
    shape; its name."""
    media_type, schema = blueprint.error_media_type, blueprint.error_schema
    if schema.__name__ != "ProblemSchema":
        name = schema.__name__.removesuffix("Schema") + name  # TFError..., OipError...
    response = {"description": description, "content": {media_type: {"schema": schema}}}
    if status == 401:
        response["headers"] = CHALLENGE
    with contextlib.suppress(DuplicateComponentNameError):
        spec.components.response(name, response, lazy=True)
    return name
