"""Request bodies as a server hands them over: in pieces, or cut short by the client.

(The service reads them in large reads: gunicorn copies what it has read ahead on every
read, so werkzeug's 64 KiB reads cost more; bench/upload_memory.py and bench/predict_speed.py
show the speed. Here: the bodies still arrive whole.)
"""

from __future__ import annotations

import io

import numpy as np
import orjson
import pytest

from tests.trained import lesson_data


class Trickle:
    """A body as a socket gives it: at most 1,000 bytes per read, whatever was asked."""

    def __init__(self, data: bytes):
        self.data = io.BytesIO(data)
        self.reads = 0

    def read(self, size: int = -1) -> bytes:
        self.reads += 1
        return self.data.read(1000 if size is None or size < 0 else min(size, 1000))


def send(client, model: dict, content_length: int, stream: Trickle):
    return client.open(f"/models/{model['id']}/predict", method="POST",
                       content_type="application/json", environ_overrides={
                           "wsgi.input": stream, "CONTENT_LENGTH": str(content_length)})


def test_a_body_that_arrives_in_pieces_is_read_whole(client, lesson):
    x, _ = lesson_data(rows=200, seed=3)
    body = orjson.dumps({"instances": x.tolist()})
    stream = Trickle(body)
    response = send(client, lesson, len(body), stream)
    assert response.status_code == 200, response.get_json()
    assert np.asarray(response.get_json()["predictions"]).shape == (200, 10)
    assert stream.reads >= len(body) // 1000


@pytest.mark.parametrize("sent", ["all but the end", "nothing"])
def test_a_body_shorter_than_its_content_length_is_a_400(client, lesson, sent):
    x, _ = lesson_data(rows=20, seed=3)
    body = orjson.dumps({"instances": x.tolist()})
    response = send(client, lesson, len(body) + 500, Trickle(body if sent != "nothing" else b""))
    assert response.status_code == 400
    problem = response.get_json()
    assert response.mimetype == "application/problem+json"
    assert problem["detail"] == (f"The body ended before the {len(body) + 500:,} bytes its "
                                 "Content-Length declared."), problem


def test_a_multipart_upload_that_arrives_in_pieces_is_stored_byte_for_byte(client, config):
    x = np.random.default_rng(4).normal(size=(3000, 50)).astype(np.float32)  # 600 kB
    buffer = io.BytesIO()
    np.save(buffer, x)
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"x\"; filename=\"x.npy\""
            "\r\nContent-Type: application/octet-stream\r\n\r\n").encode() \
        + buffer.getvalue() + f"\r\n--{boundary}--\r\n".encode()
    stream = Trickle(body)
    response = client.open("/datasets", method="POST", environ_overrides={
        "wsgi.input": stream, "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": f"multipart/form-data; boundary={boundary}"})
    assert response.status_code == 201, response.get_json()
    dataset = response.get_json()
    assert dataset["arrays"] == {"x": {"shape": [3000, 50], "dtype": "float32"}}
    stored = config.data_dir / "datasets" / dataset["id"] / "x.npy"
    assert stored.read_bytes() == buffer.getvalue()
    assert stream.reads >= len(body) // 1000
