"""The Open Inference Protocol codec (service.oip) alone: no app, no model.

Requests are built by tritonclient itself where it can (`generate_request_body`), and
answers are read back with its `parse_response_body`, so the wire format is Triton's.
"""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from tritonclient.http import InferenceServerClient, InferInput, InferRequestedOutput

from service.errors import MalformedRequest
from service.oip import DATATYPE_OF, encode_answer, parse_request

ALL_DATATYPES = sorted(DATATYPE_OF.values())


def triton_body(arrays: dict, binary: bool, outputs=None) -> tuple[bytes, str | None]:
    """A request body and its Inference-Header-Content-Length, as tritonclient writes them."""
    inputs = []
    for name, array in arrays.items():
        tensor = InferInput(name, list(array.shape), DATATYPE_OF[array.dtype])
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    body, json_size = InferenceServerClient.generate_request_body(inputs, outputs=outputs)
    return body, None if json_size is None else str(json_size)


def json_body(document) -> bytes:
    return orjson.dumps(document)


def one_input(**tensor) -> bytes:
    return json_body({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", **tensor}]})


def sample(datatype: str) -> np.ndarray:
    dtype = np.dtype("bool" if datatype == "BOOL" else
                     datatype.lower().replace("fp", "float"))
    values = np.arange(6).reshape(2, 3) % (2 if dtype.kind == "b" else 7)
    return values.astype(dtype)


@pytest.mark.parametrize("datatype", ALL_DATATYPES)
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_every_datatype_decodes_to_its_numpy_dtype(datatype, binary):
    array = sample(datatype)
    request = parse_request(*triton_body({"x": array}, binary))
    decoded = request.inputs["x"]
    assert decoded.dtype == array.dtype and decoded.shape == (2, 3)
    assert np.array_equal(decoded, array)


def test_flat_and_nested_data_give_the_same_array():
    nested = one_input(shape=[2, 2], data=[[1.5, 2], [3, 4]])
    flat = one_input(shape=[2, 2], data=[1.5, 2, 3, 4])
    assert np.array_equal(parse_request(nested, None).inputs["x"],
                          parse_request(flat, None).inputs["x"])
    assert parse_request(flat, None).inputs["x"].tolist() == [[1.5, 2.0], [3.0, 4.0]]


def test_several_binary_inputs_are_read_in_the_order_of_the_header():
    a = np.arange(4, dtype="float32").reshape(2, 2)
    b = np.array([[True], [False]])
    c = np.array([[7, -8, 9]], dtype="int16")
    request = parse_request(*triton_body({"a": a, "b": b, "c": c}, binary=True))
    assert list(request.inputs) == ["a", "b", "c"]
    for name, array in (("a", a), ("b", b), ("c", c)):
        assert np.array_equal(request.inputs[name], array)


def test_binary_and_json_inputs_mix_in_one_request():
    a = np.ones((1, 3), dtype="float64")
    inputs = [InferInput("a", [1, 3], "FP64"), InferInput("b", [1, 2], "INT32")]
    inputs[0].set_data_from_numpy(a, binary_data=True)
    inputs[1].set_data_from_numpy(np.array([[1, 2]], dtype="int32"), binary_data=False)
    body, size = InferenceServerClient.generate_request_body(inputs)
    request = parse_request(body, str(size))
    assert request.inputs["b"].tolist() == [[1, 2]] and request.inputs["a"].dtype == "float64"


def test_requested_outputs_keep_their_order_and_binary_flags():
    outputs = [InferRequestedOutput("score", binary_data=True),
               InferRequestedOutput("label", binary_data=False)]
    request = parse_request(*triton_body({"x": sample("FP32")}, False, outputs))
    assert request.outputs == [("score", True), ("label", False)]


def test_without_outputs_every_output_follows_binary_data_output():
    # tritonclient asks for binary outputs when none are listed.
    assert parse_request(*triton_body({"x": sample("FP32")}, False)).binary_default is True
    assert parse_request(one_input(data=[1, 2]), None).outputs is None
    assert parse_request(one_input(data=[1, 2]), None).binary_default is False


def test_the_request_id_is_echoed_or_made_up():
    assert parse_request(json_body({"id": "req-1", "inputs": [
        {"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}), None).id == "req-1"
    assert len(parse_request(one_input(data=[1, 2]), None).id) == 36


def test_a_json_answer_reads_back_with_tritonclient():
    label = np.array([[0.25, 0.75]], dtype="float32")
    flags = np.array([[True, False]])
    answer = encode_answer("m", 3, "id-1", [("label", label, False), ("flags", flags, False)])
    assert answer.header_length is None and answer.content_type == "application/json"
    document = orjson.loads(answer.body)
    assert document["model_version"] == "3" and document["id"] == "id-1"
    assert document["outputs"][0] == {"name": "label", "shape": [1, 2], "datatype": "FP32",
                                      "data": [0.25, 0.75]}
    result = InferenceServerClient.parse_response_body(answer.body)
    assert np.array_equal(result.as_numpy("flags"), flags)


@pytest.mark.parametrize("datatype", ALL_DATATYPES)
def test_a_binary_answer_round_trips_through_tritonclient(datatype):
    array = sample(datatype)
    other = np.array([[1.0, 2.0]], dtype="float32")
    answer = encode_answer("m", 1, "i", [("out", array, True), ("json", other, False)])
    assert answer.content_type == "application/octet-stream"
    header = orjson.loads(answer.body[:answer.header_length])
    assert header["outputs"][0]["parameters"] == {"binary_data_size": array.nbytes}
    result = InferenceServerClient.parse_response_body(answer.body,
                                                       header_length=answer.header_length)
    back = result.as_numpy("out")
    assert back.dtype == array.dtype and np.array_equal(back, array)
    assert np.array_equal(result.as_numpy("json"), other)


def _binary(header: dict, payload: bytes, length_delta: int = 0) -> tuple[bytes, str]:
    text = orjson.dumps(header)
    return text + payload, str(len(text) + length_delta)


def _bin_input(size, datatype="FP32", shape=(1, 2), **extra) -> dict:
    return {"inputs": [{"name": "x", "shape": list(shape), "datatype": datatype,
                        "parameters": {"binary_data_size": size}, **extra}]}


F32x2 = np.ones(2, dtype="<f4").tobytes()
BAD_REQUESTS = [
    # (id, body, Inference-Header-Content-Length, words the error must hold)
    ("not json", b"{inputs", None, "not valid JSON"),
    ("binary without the header", *_binary(_bin_input(8), F32x2)[:1], None,
     "need the Inference-Header-Content-Length"),
    ("a json array", b"[]", None, "Expected a JSON object; received an array"),
    ("no inputs", json_body({}), None, "inputs: Missing data"),
    ("empty inputs", json_body({"inputs": []}), None, "inputs: Shorter than minimum"),
    ("no shape", json_body({"inputs": [{"name": "x", "datatype": "FP32", "data": [1]}]}),
     None, "inputs.0.shape"),
    ("negative dimension", one_input(shape=[-1, 2], data=[1, 2]), None, "inputs.0.shape"),
    ("wrong length for shape", one_input(data=[1, 2, 3]), None,
     "data holds 3 element(s); shape [1, 2] takes 2"),
    ("nested not as the shape", one_input(shape=[2, 2], data=[[1, 2, 3, 4]]), None,
     "nested data does not follow shape [2, 2]"),
    ("ragged nesting", one_input(shape=[2, 2], data=[[1, 2], [3]]), None,
     "found 1 items at depth 1"),
    ("data a number", one_input(data=1.5), None, "data must be a JSON array"),
    ("unknown datatype", one_input(datatype="FP8", data=[1, 2]), None,
     "unknown datatype 'FP8'"),
    ("lower-case datatype", one_input(datatype="fp32", data=[1, 2]), None,
     "unknown datatype 'fp32'"),
    ("BYTES", one_input(datatype="BYTES", data=["a", "b"]), None,
     "datatype BYTES is not supported"),
    ("string in FP32", one_input(data=[1, "2"]), None, "FP32 data holds a string ('2')"),
    ("boolean in FP32", one_input(data=[1, True]), None, "FP32 data holds a boolean"),
    ("null in FP32", one_input(data=[1, None]), None, "FP32 data holds null"),
    ("float in INT32", one_input(datatype="INT32", data=[1, 2.5]), None,
     "INT32 data holds a number (2.5)"),
    ("number in BOOL", one_input(datatype="BOOL", data=[1, 0]), None,
     "expected true or false only"),
    ("INT8 out of range", one_input(datatype="INT8", data=[1, 300]), None,
     "out of the range of INT8"),
    ("UINT8 negative", one_input(datatype="UINT8", data=[1, -1]), None,
     "out of the range of UINT8"),
    ("FP16 out of range", one_input(datatype="FP16", data=[1, 1e6]), None,
     "out of the range of FP16"),
    ("FP32 out of range", one_input(data=[1, 1e300]), None, "out of the range of FP32"),
    ("input twice", json_body({"inputs": [
        {"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}] * 2}), None,
     "input 'x' is given twice"),
    ("rank past the cap", one_input(shape=[1] * 33, data=[1]), None, "33 dimensions"),
    ("neither data nor binary", one_input(), None, "no 'data' and no"),
    ("both data and binary", *_binary(_bin_input(8, data=[1, 2]), F32x2), "not both"),
    ("header length past the body", *_binary(_bin_input(8), F32x2, length_delta=100),
     "Inference-Header-Content-Length must be the byte length"),
    ("header length not a number", _binary(_bin_input(8), F32x2)[0], "12abc",
     "received '12abc'"),
    ("header length zero", _binary(_bin_input(8), F32x2)[0], "0", "between 1 and"),
    ("header length cuts the json", *_binary(_bin_input(8), F32x2, length_delta=-2),
     "not valid JSON"),
    ("binary size wrong for shape", *_binary(_bin_input(12), F32x2 + b"\0" * 4),
     "binary_data_size is 12; shape [1, 2] of FP32 takes 8 bytes"),
    ("binary size a string", *_binary(_bin_input("8"), F32x2), "binary_data_size is '8'"),
    ("binary past the body", *_binary(_bin_input(8), F32x2[:5]),
     "only 5 bytes remain in the body"),
    ("bytes left over", *_binary(_bin_input(8), F32x2 + b"\0"),
     "holds 9 bytes after the JSON header; the inputs' binary_data_size add up to 8"),
    ("BOOL byte other than 0 or 1", *_binary(_bin_input(2, "BOOL"), b"\x01\x02"),
     "BOOL bytes must be 0 or 1; received 2"),
    ("shared memory", one_input(parameters={"shared_memory_region": "r"}), None,
     "shared-memory extension is not supported"),
    ("binary_data_output not a boolean", json_body({
        "parameters": {"binary_data_output": "yes"},
        "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}), None,
     "parameters.binary_data_output must be true or false"),
    ("output binary_data not a boolean", json_body({
        "outputs": [{"name": "y", "parameters": {"binary_data": 1}}],
        "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}), None,
     "outputs[0].parameters.binary_data must be true or false"),
    ("output asked twice", json_body({
        "outputs": [{"name": "y"}, {"name": "y"}],
        "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}), None,
     "an output is requested twice"),
]


@pytest.mark.parametrize("body, header_length, words",
                         [case[1:] for case in BAD_REQUESTS],
                         ids=[case[0] for case in BAD_REQUESTS])
def test_a_bad_request_is_a_400_that_says_why(body, header_length, words):
    with pytest.raises(MalformedRequest) as caught:
        parse_request(body, header_length)
    assert caught.value.status == 400
    assert words in caught.value.detail
