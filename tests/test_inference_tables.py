"""Predict bodies read by simdjson as tables (service/inference/tables.py): the same answers,
and the same 4xx for every hostile body, as orjson and the careful checks give."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import orjson
import pytest

from service.inference import payloads, tables
from tests.test_inference import BAD_PREDICTS, ROW

FORMS, INTS = ("instances", "inputs"), ("version",)
ROWS = [[(row * 100 + column) / 7 - 700 for column in range(100)] for row in range(3)]


def text(value) -> bytes:
    """A body: bytes as they are, str encoded, anything else as stdlib json writes it."""
    if isinstance(value, bytes):
        return value
    return value.encode() if isinstance(value, str) else json.dumps(value).encode()


# (id, body): each must be refused by the table reader, so that orjson reads it.
NOT_TABLES = [
    ("not JSON", "instances=1"),
    ("truncated", '{"instances": [[1, 2]]'),
    ("trailing bytes", '{"instances": [[1]]} x'),
    ("a byte-order mark", b'\xef\xbb\xbf{"instances": [[1]]}'),
    ("an array", "[[1, 2]]"),
    ("duplicated key", '{"instances": [[1]], "instances": [[true]]}'),
    ("unknown key", {"instance": ROWS}),
    ("a string version", {"instances": ROWS, "version": "1"}),
    ("a boolean version", {"instances": ROWS, "version": True}),
    ("a fractional version", {"instances": ROWS, "version": 1.5}),
    ("null instances", {"instances": None}),
    ("a number", {"instances": 3}),
    ("empty", {"instances": []}),
    ("an empty row", {"instances": [[]]}),
    ("ragged", {"instances": [ROW, ROW[:99]]}),
    ("a longer row", {"instances": [ROW, [*ROW, 1]]}),
    ("a number among rows", {"instances": [ROW, 0.5]}),
    ("a row among numbers", {"instances": [0.5, ROW]}),
    ("a list in place of a number", {"instances": [ROW, [*ROW[:99], [0.5]]]}),
    ("three levels", {"instances": [[ROW]]}),
    ("a boolean", {"instances": [[*ROW[:99], True]]}),
    ("null", {"instances": [[*ROW[:99], None]]}),
    ("a numeric string", {"instances": [[*ROW[:99], "1.5"]]}),
    ("an object among numbers", {"instances": [[*ROW[:99], {"a": 1}]]}),
    ("rows as objects", {"instances": [{"input_layer": ROW}]}),
    ("an integer past 64 bits", {"instances": [[*ROW[:99], 10**30]]}),
    ("a negative integer past 64 bits", {"instances": [[*ROW[:99], -(2**63) - 1]]}),
    ("past double", '{"instances": [[1e400]]}'),
    ("NaN", '{"instances": [[NaN]]}'),
    ("an object of non-tables", {"inputs": {"a": ROWS, "b": 3}}),
    ("an object with a duplicated name", '{"inputs": {"a": [[1]], "a": [[2]]}}'),
    ("a nested object", {"inputs": {"a": {"b": ROWS}}}),
]


@pytest.fixture
def every_size(monkeypatch):
    """Tables read whatever the body's size (small bodies are otherwise left to orjson)."""
    monkeypatch.setattr(tables, "MIN_TABLES_BYTES", 0)


@pytest.mark.parametrize("body", [case[1] for case in NOT_TABLES], ids=[c[0] for c in NOT_TABLES])
def test_anything_but_tables_is_left_to_orjson(every_size, body):
    assert tables.read_tables(text(body), FORMS, INTS) is None


@pytest.mark.parametrize("body", [
    {"instances": ROWS},
    {"instances": ROWS, "version": 2},
    {"version": 1, "inputs": ROWS},
    {"inputs": {"features": [[1, 2.5], [3, -4e-3]], "extra": [[5]]}},
    {"instances": [0.5, -1, 2e10, 18446744073709551615]},
    '{"\\u0069nstances": [[1E5, -0, 0.5e+3]]}\n',
], ids=["rows", "rows and a version", "columns", "named columns", "one level", "spellings"])
def test_tables_are_the_numbers_orjson_reads(every_size, body):
    read = tables.read_tables(text(body), FORMS, INTS)
    expected = orjson.loads(text(body))
    assert read.keys() == expected.keys()
    for key, value in expected.items():
        if isinstance(value, int):
            assert read[key] == value and type(read[key]) is int
        elif isinstance(value, dict):
            assert read[key].keys() == value.keys()
            for name, column in value.items():
                assert np.array_equal(read[key][name], np.array(column, dtype=np.float64))
        else:
            assert read[key].dtype == np.float64
            assert np.array_equal(read[key], np.array(value, dtype=np.float64))


def test_bodies_past_the_size_bounds_or_a_busy_parser_go_to_orjson(monkeypatch):
    body = text({"instances": ROWS * 2})
    assert tables.MIN_TABLES_BYTES <= len(body) <= tables.MAX_TABLES_BYTES
    assert tables.read_tables(body, FORMS, INTS) is not None
    assert tables.read_tables(text({"instances": [ROW[:10]]}), FORMS, INTS) is None  # small
    monkeypatch.setattr(tables, "MAX_TABLES_BYTES", len(body) - 1)
    assert tables.read_tables(body, FORMS, INTS) is None
    monkeypatch.undo()
    with tables._parser_lock:  # another request is parsing
        assert tables.read_tables(body, FORMS, INTS) is None
    assert tables.read_tables(body, FORMS, INTS) is not None


def input_spec(dtype: str, width: int = 100) -> SimpleNamespace:
    return SimpleNamespace(inputs=[{"name": "x", "shape": [None, width], "dtype": dtype}])


@pytest.mark.parametrize("model, cap, body", [
    (input_spec("int32"), 1000, {"instances": ROWS}),
    (input_spec("bool"), 1000, {"instances": ROWS}),
    (input_spec("float32"), 299, {"instances": ROWS}),
    (input_spec("float32"), 1000, {"instances": [[*ROW[:99], 1e39]]}),
    (input_spec("float16"), 1000, {"instances": [[*ROW[:99], 70000]]}),
], ids=["integer input", "boolean input", "past the cap", "past float32", "past float16"])
def test_tables_the_careful_path_would_refuse_or_convert_otherwise_are_read_again(
        every_size, model, cap, body):
    request = payloads.read_request(text(body), "application/json", None)
    assert isinstance(request.value, np.ndarray)  # read as a table first
    columns, _ = request.columns(model, cap)
    assert columns == {"x": body["instances"]}  # then as orjson reads it


def post(client, model: dict, body: bytes, query: str = ""):
    return client.post(f"/models/{model['id']}/predict{query}", data=body,
                       content_type="application/json")


def same_answers(client, model, body: bytes, monkeypatch, query: str = "") -> bool:
    """Assert that one body has the same answer (status and JSON) with tables and without;
    return whether it was read as tables."""
    read = []
    monkeypatch.setattr(tables, "MIN_TABLES_BYTES", 0)
    monkeypatch.setattr(payloads, "read_tables",
                        lambda *args: read.append(tables.read_tables(*args)) or read[-1])
    fast = post(client, model, body, query)
    monkeypatch.setattr(payloads, "read_tables", lambda *args: None)
    careful = post(client, model, body, query)
    monkeypatch.undo()
    assert (fast.status_code, fast.get_json()) == (careful.status_code, careful.get_json())
    return read[0] is not None


def bad_predicts():
    """The bad JSON bodies of tests/test_inference.py, with their query."""
    for name, body, content_type, _, _ in BAD_PREDICTS:
        if content_type in (None, "application/json"):
            yield pytest.param(text(body), "", id=name)
        elif content_type.startswith("?"):
            yield pytest.param(text(body), content_type, id=name)


LESSON_BODIES = [
    *bad_predicts(),
    *[pytest.param(text(case[1]), "", id=f"not a table: {case[0]}") for case in NOT_TABLES],
    pytest.param(text({"instances": ROWS}), "", id="rows"),
    pytest.param(text({"inputs": ROWS, "version": 1}), "", id="columns and a version"),
    pytest.param(text({"inputs": {"input_layer": ROWS}}), "", id="named columns"),
    pytest.param(text({"instances": [[int(v) for v in ROWS[0]]]}), "", id="integers"),
    pytest.param(text({"instances": [[*ROW[:99], 3.4e38]]}), "", id="float32's largest"),
    pytest.param(text({"instances": [[*ROW[:99], 10**19]]}), "", id="an unsigned 64-bit integer"),
    pytest.param(text({"instances": ROWS[0]}), "", id="one row unwrapped"),
    pytest.param(text({"instances": [ROWS]}), "", id="rows wrapped once more"),
]


@pytest.mark.parametrize("body, query", LESSON_BODIES)
def test_predict_answers_alike_with_and_without_tables(client, lesson, monkeypatch, body,
                                                      query):
    same_answers(client, lesson, body, monkeypatch, query)


def test_the_lesson_rows_are_read_as_tables(client, lesson, monkeypatch):
    for body in ({"instances": ROWS}, {"inputs": {"input_layer": ROWS}, "version": 1}):
        assert same_answers(client, lesson, text(body), monkeypatch)
        assert post(client, lesson, text(body)).status_code == 200


@pytest.mark.parametrize("body", [
    {"inputs": {"features": [[0.1] * 4] * 3, "extra": [[0.2] * 3] * 3}},
    {"inputs": {"features": [[0.1] * 4] * 3, "extra": [[0.2] * 3] * 2}},
    {"inputs": {"features": [[0.1] * 4] * 3, "extra": [[0.2] * 4] * 3}},
    {"inputs": {"features": [[0.1] * 4] * 3}},
    {"inputs": {"features": [[0.1] * 4] * 3, "extra": [[0.2] * 3] * 3, "meta": [[1]]}},
    {"inputs": [[0.1] * 4] * 3},
    {"instances": [[0.1] * 4] * 3},
], ids=["named columns", "rows disagree", "too wide", "missing input", "unknown input",
        "columns without names", "plain rows"])
def test_two_inputs_answer_alike_with_and_without_tables(client, two_inputs, monkeypatch,
                                                        body):
    assert same_answers(client, two_inputs, text(body), monkeypatch)


def test_a_table_of_400_rows_predicts_what_orjson_would(client, lesson, monkeypatch):
    rows = np.random.default_rng(5).random((400, 100)).tolist()  # float64 text, as clients send
    assert same_answers(client, lesson, text({"instances": rows}), monkeypatch)
    response = post(client, lesson, text({"instances": rows}))  # past MIN_TABLES_BYTES
    assert response.status_code == 200
    assert np.array(response.get_json()["predictions"]).shape == (400, 10)
