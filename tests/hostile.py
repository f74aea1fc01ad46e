"""Hostile requests to every route that takes a body, and odd numbers where ids go.

Shared by tests/test_hostile_input.py (each request through the app, in-process) and
tests/test_e2e_hostile.py (the same barrage, and 300 MB bodies, at a real server). A route's
body templates hold NUMBER where a number goes and ARRAY where an array of numbers goes;
paths and bodies hold `{...}` placeholders for the ids of the resources a test made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.operations import fill

PROBLEM_JSON = "application/problem+json"
DOCUMENT = yaml.safe_load((Path(__file__).parent.parent / "openapi.yaml").read_text())
ROW = ", ".join(["0.5"] * 99)  # 99 numbers: a NUMBER before them makes one row of the lesson


@dataclass(frozen=True)
class Route:
    label: str
    method: str
    operation: str  # the path as openapi.yaml writes it
    path: str  # the same, with the test's ids to fill in
    number_body: str
    array_body: str | None = None  # None: no array of numbers in this body
    integer: bool = True  # NUMBER must be an integer (2**64 is then past every range)
    any_media_type: bool = False  # reads JSON whatever the Content-Type, as TF Serving does


ROUTES = [
    Route("create model", "POST", "/models", "/models",
          '{"name": "hostile", "layers": [{"type": "Dense", "units": NUMBER, "input_dim": 4}]}',
          '{"name": "hostile", "type": "functional", "inputs": [{"name": "x", "shape": ARRAY}],'
          ' "layers": [], "outputs": ["x"]}'),
    Route("add layer", "POST", "/models/{model_id}/layers", "/models/{draft_id}/layers",
          '{"type": "Dense", "units": NUMBER}'),
    Route("compile", "POST", "/models/{model_id}/compile", "/models/{draft_id}/compile",
          '{"loss": "mse", "optimizer": {"type": "sgd", "learning_rate": NUMBER}}',
          integer=False),
    Route("patch", "PATCH", "/models/{model_id}", "/models/{draft_id}",
          '{"batching": {"max_batch_size": NUMBER}}'),
    Route("dataset JSON", "POST", "/datasets", "/datasets",
          '{"x": [[NUMBER, 1]], "y": [1]}', '{"x": ARRAY, "y": [1, 2]}', integer=False),
    Route("fit", "POST", "/models/{model_id}/fit", "/models/{lesson_id}/fit",
          '{"dataset": "{dataset_id}", "epochs": NUMBER}'),
    Route("predict", "POST", "/models/{model_id}/predict", "/models/{lesson_id}/predict",
          '{"instances": [[NUMBER, ' + ROW + ']], "version": 1}',
          '{"instances": ARRAY}', integer=False),
    Route("evaluate", "POST", "/models/{model_id}/evaluate", "/models/{lesson_id}/evaluate",
          '{"dataset": "{dataset_id}", "batch_size": NUMBER}',
          '{"x": ARRAY, "y": [[1, 0, 0, 0, 0, 0, 0, 0, 0, 0]]}'),
    Route("set label", "PUT", "/models/{model_id}/labels/{label}",
          "/models/{lesson_id}/labels/hostile", '{"version": NUMBER}'),
    Route("TF Serving predict", "POST", "/v1/models/{name}:predict",
          "/v1/models/{lesson_name}:predict", '{"instances": [[NUMBER, ' + ROW + ']]}',
          '{"instances": ARRAY}', integer=False, any_media_type=True),
    Route("OIP infer", "POST", "/v2/models/{name}/infer", "/v2/models/{lesson_name}/infer",
          '{"inputs": [{"name": "input_layer", "datatype": "FP32", "shape": [1, NUMBER], '
          '"data": [' + ROW + ', 0.5]}]}',
          '{"inputs": [{"name": "input_layer", "datatype": "FP32", "shape": [2, 2], '
          '"data": ARRAY}]}', any_media_type=True),
]


@dataclass(frozen=True)
class Hostile:
    label: str
    slot: str  # "number", "array", "integer" (a number slot that takes integers only), "body"
    raw: bytes  # what goes into the slot, or the whole body
    words: tuple[str, ...]  # the detail names the problem with one of these
    content_type: str | None = "application/json"

    def body(self, route: Route) -> bytes | None:
        """The body to send `route`, or None where this does not apply to it."""
        if self.slot == "body":
            return self.raw
        if self.slot == "array":
            template = route.array_body
        elif self.slot == "integer" and not route.integer:
            template = None
        else:
            template = route.number_body
        if template is None:
            return None
        marker = "ARRAY" if self.slot == "array" else "NUMBER"
        return template.encode().replace(marker.encode(), self.raw)


def nested(depth: int) -> bytes:
    return b"[" * depth + b"1" + b"]" * depth


HOSTILE = [
    Hostile("5,000-deep arrays", "array", nested(5000), ("depth", "deep")),
    Hostile("5,000-deep objects", "body", b'{"a": ' * 5000 + b"1" + b"}" * 5000,
            ("depth", "deep")),
    # Deeper than KERAS_SERVICE_MAX_JSON_DEPTH (32), within orjson's own limit (1024).
    Hostile("100-deep arrays", "array", nested(100),
            ("deep", "depth", "dimensions", "rank", "nested", "expects")),
    Hostile("ragged arrays", "array", b"[[1, 2], [3]]",
            ("ragged", "Not a valid integer", "nested")),
    Hostile("NaN", "number", b"NaN", ("not valid JSON",)),
    Hostile("Infinity", "number", b"-Infinity", ("not valid JSON",)),
    Hostile("1e400", "number", b"1e400", ("infinity",)),
    Hostile("10**400", "number", str(10**400).encode(), ("infinity",)),
    Hostile("2**64", "integer", str(2**64).encode(), ("integer", "version", "expects", "cap")),
    Hostile("a string for a number", "number", b'"1"', ("string", "number", "integer")),
    Hostile("empty body", "body", b"", ("no body", "empty")),
    Hostile("no Content-Type, no body", "body", b"", ("no body", "empty", "Content-Type"),
            content_type=None),
    Hostile("a JSON array for the body", "body", b"[1, 2]", ("object",)),
    Hostile("invalid UTF-8", "body", b'{"x": "\xff\xfe"}', ("not valid JSON",)),
]

# The route's body, as another media type: 415, except where JSON is read whatever it says.
WRONG_MEDIA_TYPES = ["text/plain", "application/xml", "application/x-www-form-urlencoded",
                     "application/octet-stream"]

# Numbers where a version, an index, an offset or a byte count goes: N in the path or header.
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


def npy_header(shape: tuple) -> bytes:
    """A .npy header for float32 `shape`, written by hand: numpy.save refuses odd shapes."""
    header = repr({"descr": "<f4", "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header


BOUNDARY = "hostile"


def form(data: bytes, disposition: str = 'form-data; name="x"; filename="x.npy"') -> bytes:
    """A multipart/form-data body (boundary BOUNDARY) of one part holding `data`."""
    return (f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data
            + f"\r\n--{BOUNDARY}--\r\n".encode())


MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
NEGATIVE = npy_header((-1, -100)) + bytes(400)  # the two signs cancel out in its size
# Binary bodies: (label, method, path as openapi.yaml writes it, path to send, body,
# Content-Type, words). Each route's own tests hold the rest; these reach the same checks.
BINARY = [
    ("predict .npy: not a .npy", "POST", "/models/{model_id}/predict",
     "/models/{lesson_id}/predict", b"\x93NUMPY\xff\xff garbage", "application/x-npy",
     (".npy",)),
    ("predict .npy: negative dimensions", "POST", "/models/{model_id}/predict",
     "/models/{lesson_id}/predict", NEGATIVE, "application/x-npy", ("negative",)),
    ("predict .npz: not a zip", "POST", "/models/{model_id}/predict",
     "/models/{lesson_id}/predict", b"PK\x03\x04 nothing", "application/x-npz", ("zip",)),
    ("dataset upload: negative dimensions", "POST", "/datasets", "/datasets", form(NEGATIVE),
     MULTIPART, ("negative",)),
    ("dataset upload: a part without a name", "POST", "/datasets", "/datasets",
     form(b"1", "form-data"), MULTIPART, ("no name",)),
    ("dataset upload: no boundary", "POST", "/datasets", "/datasets", form(b"1"),
     "multipart/form-data", ("boundary",)),
    ("model import: not a .keras file", "POST", "/models/import", "/models/import",
     form(b"\x00garbage" * 100, 'form-data; name="file"; filename="m.keras"'), MULTIPART,
     (".keras",)),
]


@dataclass(frozen=True)
class Sent:
    """One hostile request, and what its refusal must say."""

    label: str
    method: str
    operation: str  # the path as openapi.yaml writes it
    path: str  # with `{...}` placeholders for the test's ids
    body: bytes = b""
    headers: dict = field(default_factory=dict)
    words: tuple[str, ...] = ()  # the detail holds one of these (any detail if empty)

    def filled(self, ids: dict) -> tuple[str, bytes]:
        """(path, body) with the test's ids."""
        text = self.body.decode("utf-8", "surrogateescape")  # keeps invalid UTF-8 as it is
        return fill(self.path, ids), fill(text, ids).encode("utf-8", "surrogateescape")


def hostile_requests() -> list[Sent]:
    """Each hostile body to each route, each route's body as other media types, binary
    bodies that are not what they claim, and the odd numbers where numbers go in paths,
    queries and headers."""
    sent = []
    for route in ROUTES:
        for hostile in HOSTILE:
            body = hostile.body(route)
            if body is not None:
                headers = {"Content-Type": hostile.content_type} if hostile.content_type else {}
                sent.append(Sent(f"{route.label}: {hostile.label}", route.method,
                                 route.operation, route.path, body, headers, hostile.words))
        if not route.any_media_type:
            body = route.number_body.replace("NUMBER", "1").encode()
            sent += [Sent(f"{route.label}: {media_type}", route.method, route.operation,
                          route.path, body, {"Content-Type": media_type}, ("Content-Type",))
                     for media_type in WRONG_MEDIA_TYPES]
    sent += [Sent(label, method, operation, path, body, {"Content-Type": content_type}, words)
             for label, method, operation, path, body, content_type, words in BINARY]
    predict = b'{"instances": [[' + ROW.encode() + b', 0.5]]}'
    for method, operation, path, headers in NUMBERED:
        sent += [Sent(f"{method} {path}: {number}", method, operation, path.replace("N", number),
                      predict if method == "POST" else b"",
                      {"Content-Type": "application/json",
                       **{key: value.replace("N", number) for key, value in headers.items()}})
                 for number in ODD_NUMBERS]
    return sent


def documented_statuses(method: str, path: str) -> set[int]:
    """The statuses openapi.yaml lists for `method` `path` (a path as the document writes it)."""
    return {int(status) for status in DOCUMENT["paths"][path][method.lower()]["responses"]}


def check_refusal(sent: Sent, status: int, media_type: str, body) -> str:
    """The refusal's detail, after checking that it is a 4xx that openapi.yaml lists for the
    operation, in the operation's error shape, and that the detail holds one of the words."""
    assert 400 <= status < 500, (sent.label, status, body)
    statuses = documented_statuses(sent.method, sent.operation)
    assert status in statuses, f"{sent.label}: {status} is not in openapi.yaml's {statuses}"
    if sent.operation.startswith(("/v1/", "/v2/")):  # the serving protocols' {"error": ...}
        assert media_type == "application/json" and list(body) == ["error"], (media_type, body)
        detail = body["error"]
    else:
        assert media_type == PROBLEM_JSON and body["status"] == status, (media_type, body)
        detail = body["detail"]
    assert not sent.words or any(word.lower() in detail.lower() for word in sent.words), detail
    return detail
