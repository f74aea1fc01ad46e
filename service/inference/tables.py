"""Predict bodies whose arrays are plain tables of numbers, read by simdjson into numpy.

orjson reads 1,000 rows of 100 float64 numbers (2 MB of text) in about 8 ms, one Python
float per number, and numpy needs about 4 ms more to make an array of them. simdjson
parses the same text in about 2 ms and copies the numbers out as doubles, with no Python
object per number. It is used only where it gives what the careful path (orjson, then
`inputs.checked_inputs`) would: a table is one level of numbers or two levels of equally
long rows of numbers. Anything else (a boolean, null or string among the numbers, a
ragged row, a number simdjson cannot hold, a duplicated key, a byte-order mark, a body
that is not JSON) makes `read_tables` return None, and orjson reads the body, so every
refusal keeps the careful path's message.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import simdjson

# Below this size orjson is as fast (a few rows: its fixed cost per call is lower).
MIN_TABLES_BYTES = 8 * 2**10
# simdjson keeps the buffers of the largest document it has parsed (about three times its
# size is touched), so one parser is kept, for bodies up to this size; larger ones, and
# requests that find it busy, go to orjson.
MAX_TABLES_BYTES = 4 * 2**20
# Past this size numpy counts bytes faster than bytes.count, whose C loop takes ~1 ns/byte.
_NUMPY_COUNT_BYTES = 32 * 2**10
_UTF8_BOM = b"\xef\xbb\xbf"  # simdjson skips one, orjson (RFC 8259) refuses it

_parser = simdjson.Parser(max_capacity=MAX_TABLES_BYTES)
_parser_lock = threading.Lock()


def read_tables(body: bytes, table_keys: tuple[str, ...],
                int_keys: tuple[str, ...]) -> dict | None:
    """The JSON object in `body` as a dict, when it is made of tables and integers only.

    Args:
        body: the request body.
        table_keys: keys whose value may be a table, or an object of tables by name.
        int_keys: keys whose value may be an integer.

    Returns:
        {key: float64 array (or {name: float64 array}) or int}, or None when the body is
        anything else, or smaller than MIN_TABLES_BYTES, or larger than MAX_TABLES_BYTES,
        or the parser is busy.
    """
    if not MIN_TABLES_BYTES <= len(body) <= MAX_TABLES_BYTES or body.startswith(_UTF8_BOM):
        return None
    if not _parser_lock.acquire(blocking=False):
        return None
    try:
        # simdjson's errors: ValueError (not JSON, not UTF-8), RuntimeError (an integer
        # past 64 bits), TypeError (a value of another type than asked).
        try:
            document = _parser.parse(body)
        except (ValueError, RuntimeError):
            return None
        fields = _fields(document, table_keys, int_keys)
        # The lazy views into the parser's buffers go before the next request may parse.
        del document
    finally:
        _parser_lock.release()
    if fields is None:
        return None
    values, brackets = fields
    # The only '[' in such a body open the tables' arrays (keys are known names, the other
    # values integers): any other array, such as [2] where a number belongs, shows here.
    if _count_byte(body, b"[") != brackets:
        return None
    return values


def _fields(document, table_keys: tuple[str, ...],
            int_keys: tuple[str, ...]) -> tuple[dict, int] | None:
    """({key: value}, the number of arrays the tables have) of a parsed object, or None."""
    if not isinstance(document, simdjson.Object):
        return None
    keys = list(document.keys())
    if len(set(keys)) != len(keys):  # orjson keeps the last of duplicates, simdjson the first
        return None
    values, brackets = {}, 0
    for key in keys:
        value = document[key]
        if key in int_keys and type(value) is int:
            values[key] = value
        elif key in table_keys and isinstance(value, simdjson.Array):
            table = _table(value)
            if table is None:
                return None
            values[key], brackets = table[0], brackets + table[1]
        elif key in table_keys and isinstance(value, simdjson.Object):
            # value.items() would unbox the columns into lists: look each one up instead.
            tables = {name: _table(value[name]) for name in value.keys()}
            if len(tables) != len(value) or None in tables.values():
                return None
            values[key] = {name: table[0] for name, table in tables.items()}
            brackets += sum(table[1] for table in tables.values())
        else:
            return None
    return values, brackets


def _table(value) -> tuple[np.ndarray, int] | None:
    """(the numbers as a float64 array, how many arrays hold them) of a table, or None."""
    if not isinstance(value, simdjson.Array) or not len(value):
        return None
    first = value[0]
    if isinstance(first, simdjson.Array):
        width = len(first)
        if not width or not all(isinstance(row, simdjson.Array) and len(row) == width
                                for row in value):
            return None
        shape = (len(value), width)
    else:
        shape = (len(value),)
    try:
        numbers = np.frombuffer(value.as_buffer(of_type="d"), np.float64)
    except (TypeError, ValueError, RuntimeError):  # a value that is not a number
        return None
    # as_buffer flattens nested arrays: [[1, [2]], [3, 4]] gives four numbers too, so the
    # caller also counts the arrays in the body.
    if numbers.size != math.prod(shape):
        return None
    return numbers.reshape(shape), 1 + (shape[0] if len(shape) == 2 else 0)


def _count_byte(body: bytes, byte: bytes) -> int:
    if len(body) < _NUMPY_COUNT_BYTES:
        return body.count(byte)
    return int(np.count_nonzero(np.frombuffer(body, np.uint8) == byte[0]))
