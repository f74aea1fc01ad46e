"""HTTP stories of datasets: upload as JSON, .npy files or one .npz; read, list, delete.

Every bad upload is a 4xx that says what was wrong, and leaves nothing behind: no row in
the registry, no folder or temporary file under DATA_DIR/datasets.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import struct
import subprocess
import zipfile

import numpy as np
import pytest

from service import create_app
from service.config import Config
from service.datasets import open_arrays

JSON_PROBLEM = "application/problem+json"


def npy(array, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def npz(members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def files(**named: bytes) -> dict:
    """A multipart form for the test client: field name -> (file, filename)."""
    return {name: (io.BytesIO(data), f"{name}.npy") for name, data in named.items()}


def post_files(client, data: dict):
    return client.post("/datasets", data=data, content_type="multipart/form-data")


def dataset_folder(config, dataset_id):
    return config.data_dir / "datasets" / dataset_id


def leftovers(app) -> tuple[set, int]:
    """What a refused upload must not change: the dataset folders and the registry's count."""
    services = app.extensions["keras_service"]
    folders = {p.name for p in services.store.datasets_dir.iterdir()}
    return folders, services.datasets.list("default", limit=1, offset=0)[1]


# -- stories ----------------------------------------------------------------------------------

def test_json_story_upload_read_list_delete(client, config):
    response = client.post("/datasets", json={
        "name": "xor", "x": [[0, 0], [0, 1], [1, 0], [1, 1]], "y": [0.0, 1.0, 1.0, 0.0]})
    assert response.status_code == 201, response.get_json()
    dataset = response.get_json()
    assert response.headers["Location"] == f"/datasets/{dataset['id']}"
    assert dataset["name"] == "xor" and dataset["rows"] == 4 and len(dataset["id"]) == 32
    assert dataset["arrays"] == {"x": {"shape": [4, 2], "dtype": "int64"},
                                 "y": {"shape": [4], "dtype": "float32"}}
    folder = dataset_folder(config, dataset["id"])
    assert sorted(p.name for p in folder.iterdir()) == ["x.npy", "y.npy"]
    assert dataset["bytes"] == sum(p.stat().st_size for p in folder.iterdir())

    assert client.get(f"/datasets/{dataset['id']}").get_json() == dataset
    page = client.get("/datasets?limit=500").get_json()
    assert dataset in page["items"] and page["limit"] == 500 and page["offset"] == 0
    assert [d["id"] for d in client.get("/datasets?name=xor").get_json()["items"]][-1] == \
        dataset["id"]

    assert client.delete(f"/datasets/{dataset['id']}").status_code == 204
    assert client.get(f"/datasets/{dataset['id']}").status_code == 404
    assert client.delete(f"/datasets/{dataset['id']}").status_code == 404
    assert not folder.exists()


def test_json_arrays_round_trip_exactly_and_memory_map(app, client):
    x = [[0.5, -1.25, 3.0e-7], [1e30, 2.0, -0.0]]
    response = client.post("/datasets", json={
        "x": x, "labels": [1, 2], "wide": [[1.5], [2**40]], "dtypes": {"wide": "float64"}})
    assert response.status_code == 201, response.get_json()
    dataset = response.get_json()
    assert dataset["name"] is None
    assert dataset["arrays"]["wide"]["dtype"] == "float64"
    arrays = open_arrays(app.extensions["keras_service"].store, dataset["id"],
                         ["x", "labels", "wide"])
    assert isinstance(arrays["x"], np.memmap) and not arrays["x"].flags.writeable
    assert np.array_equal(arrays["x"], np.array(x, dtype=np.float32))
    assert np.array_equal(arrays["labels"], np.array([1, 2], dtype=np.int64))
    assert np.array_equal(arrays["wide"], np.array([[1.5], [2.0**40]]))


def test_npy_upload_round_trips_byte_for_byte(app, client, config):
    x = np.random.default_rng(0).normal(size=(64, 3, 2)).astype(np.float32)
    y = np.arange(64, dtype=np.uint8)
    mask = np.arange(64) % 2 == 0
    response = post_files(client, {**files(x=npy(x), y=npy(y), mask=npy(mask)),
                                   "name": "tiny-images"})
    assert response.status_code == 201, response.get_json()
    dataset = response.get_json()
    assert dataset["name"] == "tiny-images" and dataset["rows"] == 64
    assert dataset["arrays"] == {"mask": {"shape": [64], "dtype": "bool"},
                                 "x": {"shape": [64, 3, 2], "dtype": "float32"},
                                 "y": {"shape": [64], "dtype": "uint8"}}
    folder = dataset_folder(config, dataset["id"])
    assert (folder / "x.npy").read_bytes() == npy(x)
    row = app.extensions["keras_service"].datasets.get("default", dataset["id"])
    arrays = open_arrays(app.extensions["keras_service"].store, row, ["x", "y", "mask"])
    assert np.array_equal(arrays["x"], x) and np.array_equal(arrays["y"], y)
    assert np.array_equal(arrays["mask"], mask)


def test_sha256_is_the_sha256sum_listing_of_the_files(client, config):
    response = post_files(client, files(x=npy(np.ones((3, 2))), y=npy(np.zeros(3))))
    dataset = response.get_json()
    folder = dataset_folder(config, dataset["id"])
    listing = "".join(f"{hashlib.sha256((folder / n).read_bytes()).hexdigest()}  {n}\n"
                      for n in ("x.npy", "y.npy"))
    assert dataset["sha256"] == hashlib.sha256(listing.encode()).hexdigest()
    shell = subprocess.run("LC_ALL=C sha256sum *.npy | sha256sum", shell=True, cwd=folder,
                           capture_output=True, text=True, check=True)
    assert shell.stdout.split()[0] == dataset["sha256"]


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_npz_upload_makes_one_array_per_member(app, client, compression):
    x, y = np.arange(20, dtype=np.float64).reshape(5, 4), np.array([0, 1, 0, 1, 1])
    archive = npz({"x.npy": npy(x), "y.npy": npy(y)}, compression)
    response = post_files(client, {"file": (io.BytesIO(archive), "d.npz"), "name": "pairs"})
    assert response.status_code == 201, response.get_json()
    dataset = response.get_json()
    assert sorted(dataset["arrays"]) == ["x", "y"] and dataset["rows"] == 5
    arrays = open_arrays(app.extensions["keras_service"].store, dataset["id"], ["x", "y"])
    assert np.array_equal(arrays["x"], x) and np.array_equal(arrays["y"], y)


def test_numpy_savez_compressed_file_is_accepted(client, tmp_path):
    path = tmp_path / "d.npz"
    np.savez_compressed(path, x=np.zeros((100, 8), np.float32), y=np.ones(100, np.int32))
    response = post_files(client, {"file": (open(path, "rb"), "d.npz")})
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["arrays"]["y"] == {"shape": [100], "dtype": "int32"}


def test_another_tenants_dataset_is_not_found(app, client):
    dataset = client.post("/datasets", json={"x": [1, 2]}).get_json()
    datasets = app.extensions["keras_service"].datasets
    with pytest.raises(Exception, match="No dataset"):
        datasets.get("someone-else", dataset["id"])
    with pytest.raises(Exception, match="No dataset"):
        datasets.delete("someone-else", dataset["id"])
    assert datasets.list("someone-else", limit=10, offset=0) == ([], 0)
    assert client.get(f"/datasets/{dataset['id']}").status_code == 200


def test_list_is_paginated(client):
    for index in range(3):
        client.post("/datasets", json={"name": "paged", "x": [index]})
    first = client.get("/datasets?name=paged&limit=2&offset=0").get_json()
    second = client.get("/datasets?name=paged&limit=2&offset=2").get_json()
    assert len(first["items"]) == 2 and first["total"] >= 3
    assert not {d["id"] for d in first["items"]} & {d["id"] for d in second["items"]}
    assert client.get("/datasets?limit=0").status_code == 422


def test_open_arrays_names_what_is_missing(app, client):
    dataset = client.post("/datasets", json={"x": [1, 2]}).get_json()
    store = app.extensions["keras_service"].store
    with pytest.raises(Exception, match="has no array 'y'; it has x"):
        open_arrays(store, dataset["id"], ["y"])
    with pytest.raises(Exception, match="not accepted"):
        open_arrays(store, dataset["id"], ["../x"])


@pytest.mark.parametrize("path", ["/datasets/..", "/datasets/..%2f..%2fetc", "/datasets/%2e%2e",
                                  "/datasets/" + "0" * 32, "/datasets/ABC", "/datasets/x.npy"])
@pytest.mark.parametrize("method", ["get", "delete"])
def test_unknown_and_path_like_ids_are_404(client, config, method, path):
    before = sorted(p.name for p in (config.data_dir / "datasets").iterdir())
    response = getattr(client, method)(path)
    assert response.status_code == 404
    assert response.content_type == JSON_PROBLEM
    assert sorted(p.name for p in (config.data_dir / "datasets").iterdir()) == before


# -- bad uploads ------------------------------------------------------------------------------

def zip_declaring(size: int) -> bytes:
    """An .npz whose member claims to unpack to `size` bytes (a zip bomb's signature)."""
    data = bytearray(npz({"x.npy": npy(np.zeros(1000))}, zipfile.ZIP_DEFLATED))
    local, central = data.find(b"PK\x03\x04"), data.find(b"PK\x01\x02")
    struct.pack_into("<I", data, local + 22, size)
    struct.pack_into("<I", data, central + 24, size)
    return bytes(data)


def as_npz(archive: bytes) -> dict:
    return {"file": (io.BytesIO(archive), "d.npz")}


OBJECTS = np.array([{"a": 1}, None], dtype=object)
GOOD = npy(np.zeros((4, 2), np.float32))

BAD_JSON = [
    ({"x": [[1, 2, 3], [4, 5]]}, 422, "ragged: row 1 has 2 element(s), row 0 has 3"),
    ({"x": [[1, 2], 3]}, 422, "ragged"),
    ({"x": [1, "2"]}, 422, "string"),
    ({"x": [1, None]}, 422, "null"),
    ({"x": [1, True]}, 422, "boolean"),
    ({"x": [{"a": 1}]}, 422, "object"),
    ({"x": 5}, 422, "must be a JSON array"),
    ({"x": None}, 422, "must be a JSON array"),
    ({"x": []}, 422, "empty"),
    ({"x": [[]]}, 422, "empty"),
    ({"x": [1e39]}, 422, "outside the float32 range"),
    ({"x": [[1.5], [-3.5e38]]}, 422, "-3.5e+38 at element [1][0]"),
    ({"x": [2**63]}, 422, "int64 range"),
    ({"x": [1.5], "dtypes": {"x": "int32"}}, 422, "expects integers"),
    ({"x": [1], "dtypes": {"x": "object"}}, 422, "dtypes.x"),
    ({"x": [1], "dtypes": {"z": "float64"}}, 422, "'z'"),
    ({"x": [1, 2], "y": [1, 2, 3]}, 422, "has 3 rows, array 'x' has 2"),
    ({"../x": [1]}, 422, "'../x'"),
    ({"a/b": [1]}, 422, "'a/b'"),
    ({"1x": [1]}, 422, "'1x'"),
    ({"name": "no spaces please", "x": [1]}, 422, "name"),
    ({"name": "only-a-name"}, 422, "no arrays"),
    ({}, 422, "no arrays"),
    ({f"a{i}": [1] for i in range(17)}, 422, "at most 16 arrays"),
]


@pytest.mark.parametrize(("body", "status", "mentions"), BAD_JSON,
                         ids=[str(i) for i in range(len(BAD_JSON))])
def test_bad_json_upload_is_refused_and_leaves_nothing(app, client, body, status, mentions):
    before = leftovers(app)
    response = client.post("/datasets", json=body)
    assert response.status_code == status, response.get_json()
    assert response.content_type == JSON_PROBLEM
    assert mentions in response.get_json()["detail"]
    assert leftovers(app) == before


BAD_BODIES = [
    ({"data": b"[1e400]", "content_type": "application/json"}, 400, "infinity"),
    ({"data": b'{"x": [NaN]}', "content_type": "application/json"}, 400, "not valid JSON"),
    ({"data": b"[[1, 2]]", "content_type": "application/json"}, 400, "JSON object"),
    ({"data": b""}, 400, "no body"),
    ({"data": b"", "content_type": "application/json"}, 400, "not valid JSON"),
    ({"data": b"x=1", "content_type": "text/csv"}, 415, "multipart/form-data"),
    ({"data": b"x=1", "content_type": "application/x-www-form-urlencoded"}, 415, "-F x=@x.npy"),
    ({"data": b'{"x": [' + b"0," * 600_000 + b"0]}", "content_type": "application/json"},
     413, "KERAS_SERVICE_MAX_BODY_BYTES"),
    ({"data": b"--b\r\n", "content_type": "multipart/form-data"}, 400, "boundary"),
    ({"data": b"--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--\r\n",
      "content_type": "multipart/form-data; boundary=b"}, 400, "no name"),
    ({"data": b"--b\r\nContent-Disposition: form-data; name=\"x\"; filename=\"x.npy\"\r\n\r\nab",
      "content_type": "multipart/form-data; boundary=b"}, 400, "multipart"),
]


@pytest.mark.parametrize(("kwargs", "status", "mentions"), BAD_BODIES,
                         ids=[str(i) for i in range(len(BAD_BODIES))])
def test_bad_body_is_refused_and_leaves_nothing(app, client, kwargs, status, mentions):
    before = leftovers(app)
    response = client.post("/datasets", **kwargs)
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.content_type == JSON_PROBLEM
    assert mentions in response.get_json()["detail"]
    assert leftovers(app) == before


BAD_FILES = [
    (files(x=npy(np.array([[1.0, np.nan]], np.float32))), 422, "NaN or infinity at [0, 1]"),
    (files(x=npy(np.array([1.0, 2.0, np.inf]))), 422, "NaN or infinity at [2]"),
    (files(x=npy(np.array([1, np.inf], np.float16))), 422, "NaN or infinity"),
    (files(x=npy(OBJECTS, allow_pickle=True)), 422, "dtype object"),
    (files(x=GOOD[:-8]), 422, "truncated"),
    (files(x=GOOD + b"extra"), 422, "bytes after its data"),
    (files(x=b"definitely not an array"), 422, "not a .npy file"),
    (files(x=npy(np.zeros(3, np.complex64))), 422, "complex64"),
    (files(x=npy(np.array(["a", "b"]))), 422, "<U1"),
    (files(x=npy(np.zeros(2, dtype=[("a", "<f4"), ("b", "<i4")]))), 422, "expected one of"),
    (files(x=npy(np.zeros(3, ">f4"))), 422, "big-endian"),
    (files(x=npy(np.asfortranarray(np.zeros((3, 2))))), 422, "Fortran order"),
    (files(x=npy(np.float32(1.5))), 422, "zero-dimensional"),
    (files(x=npy(np.zeros((0, 3)))), 422, "empty"),
    (files(x=GOOD, y=npy(np.zeros(3))), 422, "Array 'y' has 3 rows, array 'x' has 4"),
    ({"../x": (io.BytesIO(GOOD), "x.npy")}, 422, "'../x'"),
    ({"a/b": (io.BytesIO(GOOD), "x.npy")}, 422, "'a/b'"),
    ({"name": (io.BytesIO(GOOD), "x.npy")}, 422, "reserved"),
    ({"x": "1,2,3"}, 422, "put @ before"),
    ({**files(x=GOOD), "name": "two words"}, 422, "name"),
    ({}, 422, "no arrays"),
    (as_npz(npz({"../x.npy": GOOD})), 422, "a path"),
    (as_npz(npz({"sub/x.npy": GOOD})), 422, "a path"),
    (as_npz(npz({"x.npy": GOOD, "notes.txt": b"hello"})), 422, "not a .npy file"),
    (as_npz(npz({"1x.npy": GOOD})), 422, "'1x'"),
    (as_npz(npz({"x.npy": npy(OBJECTS, allow_pickle=True)})), 422, "dtype object"),
    (as_npz(npz({"x.npy": GOOD[:-4]})), 422, "truncated"),
    (as_npz(npz({"x.npy": npy(np.array([np.nan]))})), 422, "NaN"),
    (as_npz(npz({f"a{i}.npy": GOOD for i in range(17)})), 422, "at most 16"),
    (as_npz(zip_declaring(1_500_000_000)), 422, "zip bomb"),
    (as_npz(zip_declaring(4_000_000_000)), 413, "KERAS_SERVICE_MAX_DATASET_BYTES"),
    (as_npz(b"PK\x03\x04 but not really a zip"), 422, "not a readable zip"),
    ({**as_npz(npz({"x.npy": GOOD})), **files(y=GOOD)}, 422, "either .npy files"),
]


@pytest.mark.parametrize(("form", "status", "mentions"), BAD_FILES,
                         ids=[str(i) for i in range(len(BAD_FILES))])
def test_bad_file_upload_is_refused_and_leaves_nothing(app, client, form, status, mentions):
    before = leftovers(app)
    response = post_files(client, form) if form else client.post(
        "/datasets", data=b"", content_type="multipart/form-data")
    assert response.status_code == status, response.get_json()
    assert response.content_type == JSON_PROBLEM
    detail = response.get_json()["detail"]
    assert mentions in detail, detail
    assert "Traceback" not in detail
    assert leftovers(app) == before


# -- caps -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_app(tmp_path_factory):
    config = Config.from_env(environ={}, data_dir=str(tmp_path_factory.mktemp("small")),
                             max_dataset_bytes=64 * 1024, max_inline_elements=100)
    app = create_app(config)
    yield app
    app.extensions["keras_service"].builder.close()


@pytest.mark.parametrize(("kwargs", "status", "mentions"), [
    ({"data": files(x=npy(np.zeros(20_000, np.float32)))}, 413,
     "cap of 65,536 bytes (KERAS_SERVICE_MAX_DATASET_BYTES)"),
    ({"data": as_npz(npz({"x.npy": npy(np.zeros(20_000))}, zipfile.ZIP_DEFLATED))}, 413,
     "KERAS_SERVICE_MAX_DATASET_BYTES"),
    ({"json": {"x": list(range(101))}}, 422, "KERAS_SERVICE_MAX_INLINE_ELEMENTS"),
    ({"json": {"x": list(range(60)), "y": list(range(60))}}, 422, "in all"),
], ids=["npy", "npz", "elements", "elements-in-all"])
def test_caps_are_named(small_app, kwargs, status, mentions):
    client = small_app.test_client()
    if "data" in kwargs:
        kwargs["content_type"] = "multipart/form-data"
    before = leftovers(small_app)
    response = client.post("/datasets", **kwargs)
    assert response.status_code == status, response.get_json()
    assert mentions in response.get_json()["detail"]
    assert leftovers(small_app) == before
    assert client.post("/datasets", json={"x": list(range(100))}).status_code == 201


def test_chunked_upload_past_the_cap_stops_at_the_cap(small_app):
    body = (b"--b\r\nContent-Disposition: form-data; name=\"x\"; filename=\"x.npy\"\r\n\r\n"
            + npy(np.zeros(20_000)) + b"\r\n--b--\r\n")
    before = leftovers(small_app)
    response = small_app.test_client().post(
        "/datasets", input_stream=io.BytesIO(body),
        headers={"Content-Type": "multipart/form-data; boundary=b",
                 "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True})
    assert response.status_code == 413, response.get_json()
    assert "KERAS_SERVICE_MAX_DATASET_BYTES" in response.get_json()["detail"]
    assert leftovers(small_app) == before


def test_data_dir_cap_is_named(app, client, monkeypatch):
    datasets = app.extensions["keras_service"].datasets
    used = app.extensions["keras_service"].store.used_bytes()
    monkeypatch.setattr(datasets, "limits",
                        dataclasses.replace(datasets.limits, max_data_dir_bytes=used + 1000))
    before = leftovers(app)
    for kwargs in ({"json": {"x": list(range(200))}},
                   {"data": files(x=npy(np.zeros(200))), "content_type": "multipart/form-data"}):
        response = client.post("/datasets", **kwargs)
        assert response.status_code == 413, response.get_json()
        assert "KERAS_SERVICE_MAX_DATA_DIR_BYTES" in response.get_json()["detail"]
        assert leftovers(app) == before


def test_a_dataset_a_job_still_reads_cannot_be_deleted(app, client, config):
    from service.registry.tables import Job
    from service.storage import new_id

    dataset = client.post("/datasets", json={"x": [[1.0], [2.0]], "y": [0, 1]}).get_json()
    job = Job(id=new_id(), tenant_id="default", model_id=new_id(), dataset_id=dataset["id"],
              state="queued", request={}, epochs=1)
    database = app.extensions["keras_service"].database
    with database.transaction() as session:
        session.add(job)
    response = client.delete(f"/datasets/{dataset['id']}")
    assert response.status_code == 409
    assert job.id in response.get_json()["detail"]
    assert dataset_folder(config, dataset["id"]).exists()
    with database.transaction() as session:
        session.get(Job, job.id).state = "succeeded"
    assert client.delete(f"/datasets/{dataset['id']}").status_code == 204
