"""A 50 MB .npy upload streams to disk: the app's Python heap grows by a few MB, not 50.

tracemalloc counts every Python and numpy allocation of the process, which is deterministic;
RSS would be too (for one request) but also counts what earlier tests left in the allocator.
The multipart body is written to a file first and fed to the app as its input stream, so
the test client holds none of it in memory either.
"""

from __future__ import annotations

import hashlib
import tracemalloc

import numpy as np
from numpy.lib import format as npy_format

from service.storage import sha256_of

ROWS, COLUMNS = 50_000, 256  # float32: 51.2 MB of data
BOUNDARY = "memory-test-boundary"


def write_large_npy(path) -> None:
    """A .npy written row block by row block, never whole in memory."""
    with open(path, "wb") as handle:
        npy_format.write_array_header_1_0(handle, {"descr": "<f4", "fortran_order": False,
                                                   "shape": (ROWS, COLUMNS)})
        block = np.arange(1000 * COLUMNS, dtype=np.float32).reshape(1000, COLUMNS)
        for start in range(0, ROWS, 1000):
            handle.write((block + start).tobytes())


def write_multipart_body(npy_path, body_path) -> None:
    with open(body_path, "wb") as body, open(npy_path, "rb") as npy:
        body.write(f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"x\"; "
                   f"filename=\"x.npy\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                   .encode())
        for block in iter(lambda: npy.read(1 << 20), b""):
            body.write(block)
        body.write(f"\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\n"
                   f"large\r\n--{BOUNDARY}--\r\n".encode())


def test_large_npy_upload_streams_to_disk(client, config, tmp_path):
    npy_path, body_path = tmp_path / "x.npy", tmp_path / "body"
    write_large_npy(npy_path)
    write_multipart_body(npy_path, body_path)
    size = npy_path.stat().st_size

    with open(body_path, "rb") as body:
        tracemalloc.start()
        try:
            response = client.post("/datasets", input_stream=body,
                                   content_length=body_path.stat().st_size,
                                   content_type=f"multipart/form-data; boundary={BOUNDARY}")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()

    assert response.status_code == 201, response.get_json()
    dataset = response.get_json()
    assert dataset["name"] == "large"
    assert dataset["arrays"] == {"x": {"shape": [ROWS, COLUMNS], "dtype": "float32"}}
    stored = config.data_dir / "datasets" / dataset["id"] / "x.npy"
    assert sha256_of(stored) == sha256_of(npy_path)
    expected = hashlib.sha256(f"{sha256_of(npy_path)}  x.npy\n".encode()).hexdigest()
    assert dataset["sha256"] == expected
    # Fixed buffers only: werkzeug's 64 KiB reads and the 1 MiB scan buffer of the checker.
    assert peak < size / 5, f"peak heap {peak / 2**20:.1f} MiB for {size / 2**20:.0f} MiB"
    assert client.delete(f"/datasets/{dataset['id']}").status_code == 204
