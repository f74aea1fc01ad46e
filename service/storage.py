"""The artifact store: every file the service keeps, under one data directory.

Layout::

    DATA_DIR/registry.sqlite3          the default registry
    DATA_DIR/models/<id>/compiled-<hex>.keras  the compiled model (a new name per compile)
    DATA_DIR/models/<id>/v<N>.keras     one immutable file per successful fit
    DATA_DIR/datasets/<id>/<array>.npy  one file per uploaded array

Writes are atomic: a temporary file in the destination folder, fsync, rename, fsync of the
folder. A crash leaves either the old file or the new one, plus at worst a temporary file
that `sweep_temporary_files` removes at start-up. Nothing here imports Keras or Flask.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import uuid
from pathlib import Path

from service.errors import PayloadTooLarge

TEMP_PREFIX = ".tmp-"
DATA_DIR_CAP = "KERAS_SERVICE_MAX_DATA_DIR_BYTES"
_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")


# "compiled.keras" is the name data dirs of before revision-unique names still hold.
_ARTIFACT_PATTERN = re.compile(r"^(compiled(-[0-9a-f]{12})?|v[0-9]{1,9})\.keras$")


def _checked_id(ident: str) -> str:
    if not is_valid_id(ident):
        # Ids are only ever made by new_id(); anything else must never become a path.
        raise ValueError(f"Not an id: {ident!r}")
    return ident


def new_id() -> str:
    """A server-generated id: 32 hex digits, safe as a file name and in a URL."""
    return uuid.uuid4().hex


def is_valid_id(ident: str) -> bool:
    return bool(_ID_PATTERN.fullmatch(ident or ""))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(final: Path):
    """Yield a temporary path next to `final`; on success make it `final` atomically.

    The caller writes the whole file to the yielded path (Keras' `model.save` needs a path,
    not a handle). On an exception the temporary file is removed and `final` is untouched.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = final.parent / f"{TEMP_PREFIX}{uuid.uuid4().hex}{final.suffix}"
    try:
        yield temp
        with open(temp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, final)
        _fsync_dir(final.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


class ArtifactStore:
    """Paths and housekeeping for the files under the data directory."""

    def __init__(self, data_dir: Path):
        self.root = Path(data_dir).resolve()
        self.models_dir = self.root / "models"
        self.datasets_dir = self.root / "datasets"

    def ensure_layout(self) -> None:
        self.models_dir.mkdir(parents=True, exist_ok=True)
        self.datasets_dir.mkdir(parents=True, exist_ok=True)

    def model_dir(self, model_id: str) -> Path:
        return self.models_dir / _checked_id(model_id)

    def dataset_dir(self, dataset_id: str) -> Path:
        return self.datasets_dir / _checked_id(dataset_id)

    def new_compiled_path(self, model_id: str) -> Path:
        """A name no file of the model has yet: a compile never overwrites the file the
        registry records, so a crash or a lost race before the registry update leaves
        that file as it was, and only a stray new one that `keep_compiled` removes."""
        return self.model_dir(model_id) / f"compiled-{uuid.uuid4().hex[:12]}.keras"

    def sweep_compiled(self, model_id: str, artifact: str | None) -> int:
        """Remove the compiled files nothing records (a compile killed before its registry
        update); `artifact` is the recorded file. A model whose recorded file is a version
        keeps its last compile's file: the oldest, as a newer one is a killed recompile."""
        if artifact is None or artifact.startswith("compiled"):
            return self.keep_compiled(model_id, artifact)
        files = sorted(self.model_dir(model_id).glob("compiled*.keras"),
                       key=lambda path: path.stat().st_mtime_ns)
        return self.keep_compiled(model_id, files[0].name if files else None)

    def keep_compiled(self, model_id: str, keep: str | None) -> int:
        """Remove the model's compiled files but `keep` (the one recorded); return how many."""
        removed = 0
        for path in self.model_dir(model_id).glob("compiled*.keras"):
            if path.name != keep and _ARTIFACT_PATTERN.fullmatch(path.name):
                self.remove_file(path)
                removed += 1
        return removed

    def version_path(self, model_id: str, number: int) -> Path:
        return self.model_dir(model_id) / f"v{int(number)}.keras"

    def artifact_path(self, model_id: str, artifact: str) -> Path:
        """The model's current file, by the name the registry recorded."""
        if not _ARTIFACT_PATTERN.fullmatch(artifact or ""):
            raise ValueError(f"Not an artifact name: {artifact!r}")
        return self.model_dir(model_id) / artifact

    def remove_dataset(self, dataset_id: str) -> None:
        shutil.rmtree(self.dataset_dir(dataset_id), ignore_errors=True)

    def used_bytes(self) -> int:
        """Bytes of every file under the data directory (the total-size cap counts these)."""
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())

    def check_room(self, incoming: int, cap: int, used: int | None = None) -> int:
        """What the data directory holds (`used`, measured when not given), if `incoming`
        more bytes fit under `cap`; else a 413."""
        used = self.used_bytes() if used is None else used
        if used + incoming > cap:
            raise PayloadTooLarge(
                f"The data directory holds {used:,} bytes; {incoming:,} more would pass its "
                f"cap of {cap:,} bytes ({DATA_DIR_CAP}). Delete datasets or models first.")
        return used

    def remove_model(self, model_id: str) -> None:
        shutil.rmtree(self.model_dir(model_id), ignore_errors=True)

    def remove_versions_from(self, model_id: str, first_number: int) -> list[int]:
        """Remove the model's version files numbered `first_number` or more; return those."""
        removed = []
        for path in self.model_dir(model_id).glob("v*.keras"):
            if _ARTIFACT_PATTERN.fullmatch(path.name) and int(path.stem[1:]) >= first_number:
                self.remove_file(path)
                removed.append(int(path.stem[1:]))
        return sorted(removed)

    def remove_file(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            Path(path).unlink()

    def is_writable(self) -> bool:
        try:
            with atomic_path(self.root / ".write-probe") as probe:
                probe.write_bytes(b"ok")
            return True
        except OSError:
            return False

    def sweep_temporary_files(self) -> int:
        """Remove temporary files a crash left behind; return how many."""
        removed = 0
        for temp in self.root.rglob(f"{TEMP_PREFIX}*"):
            with contextlib.suppress(OSError):
                temp.unlink()
                removed += 1
        return removed

    def sweep_orphans(self, parent: Path, known_ids: set[str]) -> int:
        """Remove folders under `parent` whose registry row is gone (a crash mid-delete)."""
        removed = 0
        if not parent.exists():
            return 0
        for folder in parent.iterdir():
            if folder.is_dir() and folder.name not in known_ids:
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        return removed
