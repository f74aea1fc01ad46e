"""kill -9 at random points: the whole service ten times on one data dir, then one web worker.

The whole service (supervisor, gunicorn, workers, builders, trainer, job processes) is
killed at seeded random points: in the middle of fits (at various epochs and batches),
around the write of a fit's version, in the middle of a JSON upload and of a multipart
.npy upload streamed in small pieces. After each restart nothing may be lost, half-written
or left over (`check_data_dir_is_consistent`), and whatever the killed work did not touch
must be exactly as it was (`check_round`). A failure names the round and its kill point;
the seed replays the same plan.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import random
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import pytest
import urllib3

from service.config import Config
from service.datasets.staging import dataset_digest
from service.server import prepare_data_dir
from tests.conftest import LESSON_LAYERS
from tests.server import (
    ServiceProcess,
    alive,
    compiled_lesson_model,
    lesson_npy_files,
    upload_npy,
    wait_for_job,
)

pytestmark = pytest.mark.slow
SEED = 20261201
KILL_POINTS = ("fit",) * 4 + ("version",) * 2 + ("json",) * 2 + ("npy",) * 2
ACTIVE = ("queued", "running", "cancelling")
# What the registry keeps at the data dir's top level, next to models/ and datasets/.
REGISTRY_FILES = re.compile(r"registry\.sqlite3(-wal|-shm|-journal)?|\.registry-stamp"
                            r"|\.write-probe|\.migrate\.lock")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def listed(server: ServiceProcess, route: str) -> list[dict]:
    page = server.get(route, params={"limit": 500}).json()
    assert page["total"] == len(page["items"]), f"{route}: more than one page"
    return page["items"]


# -- uploads in flight -------------------------------------------------------------------------

class Upload(threading.Thread):
    """POST /datasets sent piece by piece, as a slow client would; `status` stays None if the
    service dies under it. With `hold`, the second half waits until `hold` is set."""

    def __init__(self, server: ServiceProcess, content_type: str, body: bytes, *,
                 piece: int, pause_s: float = 0.0, hold: threading.Event | None = None):
        super().__init__(daemon=True)
        self.port, self.content_type, self.body = server.port, content_type, body
        self.piece, self.pause_s, self.hold = piece, pause_s, hold
        self.connected = threading.Event()
        self.local_port: int | None = None
        self.status: int | None = None
        self.answer: dict | None = None

    def run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            connection.putrequest("POST", "/datasets")
            connection.putheader("Content-Type", self.content_type)
            connection.putheader("Content-Length", str(len(self.body)))
            connection.endheaders()
            self.local_port = connection.sock.getsockname()[1]
            self.connected.set()
            for offset in range(0, len(self.body), self.piece):
                if self.hold is not None and offset >= len(self.body) // 2:
                    self.hold.wait()
                connection.send(self.body[offset:offset + self.piece])
                time.sleep(self.pause_s)
            response = connection.getresponse()
            self.answer, self.status = json.loads(response.read()), response.status
        except (OSError, http.client.HTTPException):
            pass  # the service was killed under it: no answer
        finally:
            self.connected.set()
            connection.close()


def json_upload(server: ServiceProcess, rng: np.random.Generator, rows: int) -> Upload:
    body = {"x": rng.random((rows, 100)).round(4).tolist(),
            "y": np.eye(10)[rng.integers(0, 10, rows)].tolist()}
    return Upload(server, "application/json", json.dumps(body).encode(), piece=1 << 20)


def npy_upload(server: ServiceProcess, rng: np.random.Generator, rows: int, *,
               pause_s: float = 0.0, hold: threading.Event | None = None) -> Upload:
    body, content_type = urllib3.encode_multipart_formdata(lesson_npy_files(rows, rng))
    return Upload(server, content_type, body, piece=16 << 10, pause_s=pause_s, hold=hold)


# -- the ten kills -----------------------------------------------------------------------------

@dataclass
class Fleet:
    """What exists before the first kill."""

    trainee: str        # fitted by the fit and version rounds
    queued_behind: str  # its fit waits queued behind the trainee's in the first fit round
    long_data: str
    short_data: str
    queue_rounds_left: int = 1


@dataclass
class InFlight:
    """What one round had under way when the service was killed."""

    point: str
    fitted: set[str] = field(default_factory=set)
    queued_jobs: list[str] = field(default_factory=list)
    uploads: list[Upload] = field(default_factory=list)


def make_fleet(server: ServiceProcess) -> Fleet:
    trainee = compiled_lesson_model(server, "trainee")
    queued_behind = compiled_lesson_model(server, "queued-behind")
    # Bystanders: no round touches them, so every kill must leave them exactly as they are.
    server.post("/models", json={"name": "bystander-draft", "layers": LESSON_LAYERS})
    compiled_lesson_model(server, "bystander-compiled")
    trained = compiled_lesson_model(server, "bystander-trained")
    long_data = upload_npy(server, 1000, "long")["id"]
    short_data = upload_npy(server, 256, "short")["id"]
    job = fit(server, trained["id"], short_data, epochs=1)
    assert wait_for_job(server, job, ("succeeded", "failed"))["state"] == "succeeded"
    return Fleet(trainee["id"], queued_behind["id"], long_data, short_data)


def fit(server: ServiceProcess, model_id: str, dataset_id: str, epochs: int,
        batch_size: int = 16) -> str:
    response = server.post(f"/models/{model_id}/fit", json={
        "dataset": dataset_id, "epochs": epochs, "batch_size": batch_size})
    assert response.status_code == 202, response.text
    return response.json()["id"]


def wait_until(server: ServiceProcess, job_id: str, done, poll_s: float,
               timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while not done(job := server.get(f"/jobs/{job_id}").json()):
        assert time.monotonic() < deadline, job
        time.sleep(poll_s)
    return job


def mid_fit(server: ServiceProcess, fleet: Fleet, rng: random.Random) -> InFlight:
    """A long fit, killed during epoch 0-3 at any batch; in the first such round a second
    fit waits queued behind it and must run after the restart."""
    job = fit(server, fleet.trainee, fleet.long_data, epochs=500)
    epoch, delay = rng.randrange(4), rng.uniform(0, 1.0)
    wait_until(server, job, lambda j: j["epoch"] >= epoch and j["state"] == "running", 0.05)
    in_flight = InFlight(f"fit in epoch {epoch} + {delay:.2f} s", fitted={fleet.trainee})
    if fleet.queue_rounds_left:
        fleet.queue_rounds_left -= 1
        queued = fit(server, fleet.queued_behind, fleet.short_data, epochs=1)
        assert server.get(f"/jobs/{queued}").json()["state"] == "queued"
        in_flight.fitted.add(fleet.queued_behind)
        in_flight.queued_jobs.append(queued)
    time.sleep(delay)
    return in_flight


def around_version_write(server: ServiceProcess, fleet: Fleet,
                         rng: random.Random) -> InFlight:
    """A short fit, killed just after its last epoch: while its version is saved, renamed
    or recorded (or just after)."""
    job = fit(server, fleet.trainee, fleet.short_data, epochs=3, batch_size=32)
    delay = rng.uniform(0, 0.25)
    wait_until(server, job, lambda j: j["epoch"] >= 3 or j["state"] not in ACTIVE, 0.01)
    time.sleep(delay)
    return InFlight(f"version write, {delay:.2f} s after the last epoch",
                    fitted={fleet.trainee})


def mid_upload(kind: str):
    def round_(server: ServiceProcess, fleet: Fleet, rng: random.Random) -> InFlight:
        arrays = np.random.default_rng(rng.randrange(1 << 32))
        upload = (json_upload(server, arrays, 3000) if kind == "json"
                  else npy_upload(server, arrays, 3000, pause_s=0.01))
        delay = rng.uniform(0.05, 1.5)
        upload.start()
        time.sleep(delay)
        return InFlight(f"{kind} upload, {delay:.2f} s after it began", uploads=[upload])

    return round_


ROUNDS = {"fit": mid_fit, "version": around_version_write, "json": mid_upload("json"),
          "npy": mid_upload("npy")}


# -- what must hold after each restart ---------------------------------------------------------

def settle(server: ServiceProcess, timeout: float = 180) -> None:
    """Wait until no job is active: interrupted ones end failed, queued ones run."""
    deadline = time.monotonic() + timeout
    while active := [j for j in listed(server, "/jobs") if j["state"] in ACTIVE]:
        assert time.monotonic() < deadline, f"jobs left active after the restart: {active}"
        time.sleep(0.3)


def model_snapshots(server: ServiceProcess) -> dict[str, tuple]:
    """Every model as the API shows it (ETag included), its versions and its files' bytes."""
    snapshots = {}
    for model in listed(server, "/models"):
        response = server.get(f"/models/{model['id']}")
        folder = server.data_dir / "models" / model["id"]
        files = {p.name: _sha256(p) for p in sorted(folder.glob("*"))}
        snapshots[model["id"]] = (response.json(), response.headers["ETag"],
                                  server.get(f"/models/{model['id']}/versions").json(), files)
    return snapshots


def check_data_dir_is_consistent(server: ServiceProcess, loaded: set[str]) -> None:
    models, jobs = listed(server, "/models"), listed(server, "/jobs")
    datasets = listed(server, "/datasets")
    versions = {m["id"]: server.get(f"/models/{m['id']}/versions").json()["items"]
                for m in models}
    check_files_are_the_registrys(server.data_dir, models, versions, datasets)
    for model in models:
        numbers = [v["number"] for v in versions[model["id"]]]
        assert model["state"] in ("draft", "compiled", "trained"), model
        assert model["version"] == max(numbers, default=None), model
        assert (model["state"] == "trained") == bool(numbers), model
    for job in jobs:
        assert job["state"] not in ACTIVE, job
        if job["state"] == "succeeded":
            assert job["version"] in [v["number"] for v in versions[job["model_id"]]], job
    check_versions_load(server.data_dir, versions, loaded)
    for dataset in datasets:
        check_dataset_complete(server.data_dir / "datasets" / dataset["id"], dataset)


def check_files_are_the_registrys(data_dir: Path, models, versions, datasets) -> None:
    """Every file is one the registry lists, and every file it lists is there: no temporary
    file, no unrecorded version, no orphaned folder."""
    expected = set()
    for model in models:
        # A compiled model has its one compiled file (a fresh name per compile); a trained
        # one may keep it until the next start-up sweep.
        compiled = sorted((data_dir / "models" / model["id"]).glob("compiled*.keras"))
        assert len(compiled) == (model["state"] == "compiled") or (
            model["state"] == "trained" and len(compiled) <= 1), (model, compiled)
        expected |= {p.relative_to(data_dir).as_posix() for p in compiled}
        expected |= {f"models/{model['id']}/v{v['number']}.keras" for v in versions[model["id"]]}
    for dataset in datasets:
        expected |= {f"datasets/{dataset['id']}/{name}.npy" for name in dataset["arrays"]}
    found = {p.relative_to(data_dir).as_posix() for p in data_dir.rglob("*") if p.is_file()}
    found = {name for name in found if not REGISTRY_FILES.fullmatch(name)}
    assert found == expected, {"left over": sorted(found - expected),
                               "missing": sorted(expected - found)}
    folders = {p.relative_to(data_dir).as_posix() for p in data_dir.rglob("*") if p.is_dir()}
    known = ({"models", "datasets"} | {f"models/{m['id']}" for m in models}
             | {f"datasets/{d['id']}" for d in datasets})
    assert folders <= known, sorted(folders - known)


def check_versions_load(data_dir: Path, versions: dict[str, list], loaded: set[str]) -> None:
    for model_id, items in versions.items():
        for version in items:
            path = data_dir / "models" / model_id / f"v{version['number']}.keras"
            assert _sha256(path) == version["sha256"], path
            if version["sha256"] not in loaded:  # versions are immutable: load each once
                keras.saving.load_model(path, safe_mode=True)
                loaded.add(version["sha256"])


def check_dataset_complete(folder: Path, dataset: dict) -> None:
    digests = {}
    for name, described in dataset["arrays"].items():
        array = np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False)
        assert ([*array.shape], str(array.dtype)) == (described["shape"], described["dtype"])
        assert array.shape[0] == dataset["rows"]
        digests[name] = _sha256(folder / f"{name}.npy")
    assert dataset_digest(digests) == dataset["sha256"], dataset


def check_round(server: ServiceProcess, in_flight: InFlight, models_before: dict,
                datasets_before: dict) -> None:
    """What the killed work did not touch is as it was; what it finished is kept."""
    after = model_snapshots(server)
    for model_id, before in models_before.items():
        if model_id not in in_flight.fitted:
            assert after[model_id] == before, f"model {model_id} changed"
    for model_id in in_flight.fitted:  # a killed fit adds no version, a finished one adds one
        added = (after[model_id][0]["version"] or 0) - (models_before[model_id][0]["version"] or 0)
        assert added in (0, 1), f"model {model_id} gained {added} versions"
    datasets = {d["id"]: d for d in listed(server, "/datasets")}
    assert {k: datasets.get(k) for k in datasets_before} == datasets_before
    for upload in in_flight.uploads:
        assert upload.status in (None, 201), upload.answer
        if upload.status == 201:  # answered before the kill: it must have been kept
            assert upload.answer["id"] in datasets
    for job_id in in_flight.queued_jobs:
        job = server.get(f"/jobs/{job_id}").json()
        assert job["state"] == "succeeded", job


def test_ten_kills_at_random_points_lose_and_corrupt_nothing(tmp_path):
    rng = random.Random(SEED)
    plan = list(KILL_POINTS)
    rng.shuffle(plan)
    data_dir = tmp_path / "data"
    server = ServiceProcess(data_dir, workers=1).start()
    loaded: set[str] = set()
    try:
        fleet = make_fleet(server)
        for number, kind in enumerate(plan, 1):
            models_before = model_snapshots(server)
            datasets_before = {d["id"]: d for d in listed(server, "/datasets")}
            in_flight = ROUNDS[kind](server, fleet, rng)
            server.kill_hard()
            for upload in in_flight.uploads:
                upload.join(timeout=30)

            print(f"kill {number}: {in_flight.point}")  # shown when the test fails
            server = ServiceProcess(data_dir, workers=1).start()
            try:
                settle(server)
                check_data_dir_is_consistent(server, loaded)
                check_round(server, in_flight, models_before, datasets_before)
            except AssertionError as error:
                raise AssertionError(f"after kill {number} (seed {SEED}): {in_flight.point}: "
                                     f"{error}") from error
    finally:
        server.kill_hard()  # a clean stop would only cost time here


# -- one web worker ----------------------------------------------------------------------------

def wait_for_workers(server: ServiceProcess, count: int, timeout: float = 90) -> list:
    master = server.role("web")
    deadline = time.monotonic() + timeout
    while len(workers := [w for w in master.children() if alive(w)]) != count:
        assert time.monotonic() < deadline, workers
        time.sleep(0.1)
    return workers


def worker_serving(workers: list, server_port: int, client_port: int, timeout: float = 10):
    """The worker that holds the connection from `client_port`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for worker in workers:
            for connection in worker.net_connections(kind="tcp"):
                if (connection.laddr and connection.raddr
                        and connection.laddr.port == server_port
                        and connection.raddr.port == client_port):
                    return worker
        time.sleep(0.05)
    raise AssertionError(f"no worker holds the connection from port {client_port}")


def test_kill_9_of_one_web_worker_mid_upload_the_other_answers_and_is_replaced(tmp_path):
    data_dir = tmp_path / "data"
    server = ServiceProcess(data_dir, workers=2).start()
    try:
        workers = wait_for_workers(server, 2)
        hold = threading.Event()
        upload = npy_upload(server, np.random.default_rng(SEED), 20_000, hold=hold)
        upload.start()
        assert upload.connected.wait(10) and upload.local_port
        victim = worker_serving(workers, server.port, upload.local_port)
        victims_children = victim.children(recursive=True)
        victim.kill()

        # The other worker answers meanwhile, writes included.
        for _ in range(10):
            assert server.get("/models").status_code == 200
        kept = server.post("/datasets", json={"x": [[0.5] * 4] * 3, "y": [1, 0, 1]})
        assert kept.status_code == 201, kept.text
        hold.set()
        upload.join(timeout=30)
        assert upload.status is None, "the killed worker's request cannot have been answered"

        replaced = wait_for_workers(server, 2)
        assert victim.pid not in [w.pid for w in replaced]
        deadline = time.monotonic() + 30
        while any(alive(p) for p in victims_children):  # its builder goes with it
            assert time.monotonic() < deadline, [p.cmdline() for p in victims_children]
            time.sleep(0.1)
        for _ in range(10):
            assert server.get("/readyz").status_code == 200
        assert [d["id"] for d in listed(server, "/datasets")] == [kept.json()["id"]]
    finally:
        server.kill_hard()  # a clean stop would only cost time here
    # The killed upload's half-written folder goes at the next start.
    prepare_data_dir(Config.from_env(environ={}, data_dir=str(data_dir)))
    kept_id = kept.json()["id"]
    assert sorted(p.relative_to(data_dir / "datasets").as_posix()
                  for p in (data_dir / "datasets").rglob("*")
                  ) == [kept_id, f"{kept_id}/x.npy", f"{kept_id}/y.npy"]
