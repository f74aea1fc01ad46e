"""One dataset's folder while it is written: checked files in, or nothing left at all.

Uploaded files stream into temporary "parts" in the dataset's own folder (so a part becomes
an array by a rename, never a copy), are checked, then renamed to `<name>.npy` atomically.
Leaving the `with` block by an exception removes the folder; the registry row is written
only after `finish()`, so no row ever points at a partial folder.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import BinaryIO

import numpy as np

from service.datasets.arrays import check_array_name
from service.datasets.npy import (
    MAX_ARRAYS,
    CheckedArray,
    check_npy_file,
    extract_member,
    npz_members,
    open_npz,
)
from service.errors import InvalidArray, LimitExceeded
from service.storage import TEMP_PREFIX, ArtifactStore, atomic_path

# Parts of one multipart request: arrays, plus slack for a stray field or two.
MAX_PARTS = MAX_ARRAYS + 4


class StagedDataset:
    def __init__(self, store: ArtifactStore, dataset_id: str):
        self.store = store
        self.id = dataset_id
        self.folder = store.dataset_dir(dataset_id)
        self.arrays: dict[str, CheckedArray] = {}
        self._open_parts: list[BinaryIO] = []

    def __enter__(self) -> StagedDataset:
        self.folder.mkdir(parents=True)
        return self

    def __exit__(self, error_type, error, traceback) -> None:
        self.close_parts()
        if error_type is not None:
            self.store.remove_dataset(self.id)

    # -- receiving ---------------------------------------------------------------------------

    def new_part(self, *args, **kwargs) -> BinaryIO:
        """An empty temporary file in the folder, open for writing: werkzeug's stream factory."""
        if len(self._open_parts) >= MAX_PARTS:
            raise LimitExceeded(f"The upload has more than {MAX_PARTS} files; a dataset has at "
                                f"most {MAX_ARRAYS} arrays.")
        handle = open(self._part_path(), "w+b")
        self._open_parts.append(handle)
        return handle

    def close_parts(self) -> None:
        """Flush and close every part, so that what was written is what gets checked."""
        while self._open_parts:
            self._open_parts.pop().close()

    def _part_path(self) -> Path:
        return self.folder / f"{TEMP_PREFIX}{uuid.uuid4().hex}.part"

    # -- adding arrays -----------------------------------------------------------------------

    def add_npy(self, name: str, part: Path) -> None:
        """Check the `.npy` at `part` and make it the array `name`."""
        self._check_new_name(name)
        self.arrays[name] = check_npy_file(part, name=name)
        with atomic_path(self.folder / f"{name}.npy") as temporary:
            os.replace(part, temporary)

    def add_array(self, name: str, array: np.ndarray) -> None:
        """Save an in-memory array (from JSON) as the array `name`."""
        self._check_new_name(name)
        part = self._part_path()
        with open(part, "wb") as handle:
            np.save(handle, array, allow_pickle=False)
        self.add_npy(name, part)

    def add_npz(self, part: Path, *, max_bytes: int) -> None:
        """Check the `.npz` at `part`, then extract each member as an array."""
        with open_npz(part) as archive:
            members = npz_members(archive, max_bytes=max_bytes)
            for name, member in members.items():
                extracted = self._part_path()
                extract_member(archive, member, extracted)
                self.add_npy(name, extracted)
        part.unlink()

    def _check_new_name(self, name: str) -> None:
        check_array_name(name)
        if name in self.arrays:
            raise InvalidArray(f"Array '{name}' is given twice; each array name appears once.")
        if len(self.arrays) >= MAX_ARRAYS:
            raise LimitExceeded(f"A dataset has at most {MAX_ARRAYS} arrays; received more.")

    # -- finishing ---------------------------------------------------------------------------

    def finish(self) -> dict:
        """Check the arrays agree on their row count; return the registry's description."""
        if not self.arrays:
            raise InvalidArray("The dataset has no arrays; expected at least one, e.g. "
                               '{"x": [[0.1, 0.2]], "y": [1]} or -F x=@x.npy.')
        names = sorted(self.arrays)
        first = names[0]
        rows = self.arrays[first].shape[0]
        for name in names[1:]:
            if self.arrays[name].shape[0] != rows:
                raise InvalidArray(f"Array '{name}' has {self.arrays[name].shape[0]} rows, "
                                   f"array '{first}' has {rows}; every array of a dataset "
                                   "has the same number of rows (its first dimension).")
        return {
            "arrays": {name: {"shape": list(self.arrays[name].shape),
                              "dtype": self.arrays[name].dtype} for name in names},
            "rows": rows,
            "bytes": sum(array.bytes for array in self.arrays.values()),
            "sha256": dataset_digest({name: self.arrays[name].sha256 for name in names}),
        }


def dataset_digest(file_digests: dict[str, str]) -> str:
    """SHA-256 of the `sha256sum` listing of the array files, in byte order of their names.

    The same as `cd DATA_DIR/datasets/<id> && LC_ALL=C sha256sum *.npy | sha256sum`.
    """
    listing = "".join(f"{file_digests[name]}  {name}.npy\n" for name in sorted(file_digests))
    return hashlib.sha256(listing.encode()).hexdigest()
