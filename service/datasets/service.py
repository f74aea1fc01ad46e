"""What the dataset routes do: each public method is one request's work, without HTTP.

An upload is written to the dataset's folder and checked there; the registry row is created
only once every array is in place, and any refusal removes the folder (see staging.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from schemas.common import NAME_PATTERN
from service.datasets.arrays import INLINE_CAP, array_from_json, check_array_name, json_dtype
from service.datasets.npy import MAX_ARRAYS
from service.datasets.staging import StagedDataset
from service.errors import (
    InvalidArray,
    LimitExceeded,
    ServiceError,
    WrongState,
)
from service.registry.datasets import DatasetRegistry
from service.registry.tables import Dataset
from service.storage import ArtifactStore, new_id
from service.zips import ZIP_MAGIC, starts_with

RESERVED_KEYS = ("name", "dtypes")
FILES_HINT = ("a dataset upload has files, one .npy per array (curl -F x=@x.npy -F y=@y.npy) "
              "or one .npz (curl -F file=@data.npz), and an optional text field 'name'")


@dataclass(frozen=True)
class DatasetLimits:
    max_dataset_bytes: int
    max_data_dir_bytes: int
    max_inline_elements: int

    @classmethod
    def from_config(cls, config) -> DatasetLimits:
        return cls(config.max_dataset_bytes, config.max_data_dir_bytes,
                   config.max_inline_elements)


@dataclass
class ReceivedUpload:
    """A multipart body once it is on disk: text fields, and (field name, part file) pairs."""

    fields: dict[str, list[str]] = field(default_factory=dict)
    files: list[tuple[str, Path]] = field(default_factory=list)

    def only_text_field(self, name: str, error: type[ServiceError], hint: str) -> str | None:
        """The text field `name`, given at most once and the form's only one, or None."""
        unexpected = sorted(set(self.fields) - {name})
        if unexpected:
            raise error(f"Unexpected text field(s) {', '.join(map(repr, unexpected))}: "
                        f"{hint}. With curl, put @ before a file's path.")
        values = self.fields.get(name, [])
        if len(values) > 1:
            raise error(f"The field '{name}' is given more than once.")
        return values[0] if values else None


class FileUpload(Protocol):
    """A multipart body not yet read: the web layer's side of `create_from_files`."""

    content_length: int | None

    def receive(self, new_part: Callable[..., BinaryIO]) -> ReceivedUpload:
        """Stream the body, writing each file into a fresh `new_part()`."""


class DatasetService:
    def __init__(self, registry: DatasetRegistry, store: ArtifactStore, limits: DatasetLimits):
        self.registry = registry
        self.store = store
        self.limits = limits

    # -- reading -------------------------------------------------------------------------

    def get(self, tenant_id: str, dataset_id: str) -> Dataset:
        return self.registry.get(tenant_id, dataset_id)

    def list(self, tenant_id: str, **query) -> tuple[list[Dataset], int]:
        return self.registry.list(tenant_id, **query)

    # -- changing ------------------------------------------------------------------------

    def create_from_json(self, tenant_id: str, body: dict) -> Dataset:
        """`{"name"?, "dtypes"?, <array name>: nested lists, ...}` -> a stored dataset."""
        name = _dataset_name(body.get("name"))
        given = {key: value for key, value in body.items() if key not in RESERVED_KEYS}
        _check_array_count(len(given))
        dtypes = _dtypes(body.get("dtypes"), given)
        arrays, budget = {}, self.limits.max_inline_elements
        for key, value in given.items():
            check_array_name(key)
            try:
                arrays[key] = array_from_json(value, name=key, max_elements=budget,
                                              dtype=dtypes.get(key))
            except LimitExceeded:
                raise LimitExceeded(
                    f"The arrays hold more than {self.limits.max_inline_elements:,} numbers in "
                    f"all, the most accepted inline ({INLINE_CAP}). Upload larger arrays as "
                    ".npy or .npz files (multipart/form-data).") from None
            budget -= arrays[key].size
        used = self.store.check_room(sum(array.nbytes for array in arrays.values()),
                                     self.limits.max_data_dir_bytes)

        def write(staged: StagedDataset) -> str | None:
            for key, array in arrays.items():
                staged.add_array(key, array)
            return name

        return self._create(tenant_id, used, write)

    def create_from_files(self, tenant_id: str, upload: FileUpload) -> Dataset:
        """A multipart upload (one .npy per array, or one .npz) -> a stored dataset."""
        used = self.store.check_room(upload.content_length or 0, self.limits.max_data_dir_bytes)

        def write(staged: StagedDataset) -> str | None:
            received = upload.receive(staged.new_part)
            staged.close_parts()
            name = _dataset_name(received.only_text_field("name", InvalidArray, FILES_HINT))
            self._add_files(staged, received.files)
            return name

        return self._create(tenant_id, used, write)

    def delete(self, tenant_id: str, dataset_id: str) -> None:
        dataset = self.registry.get(tenant_id, dataset_id)
        job_id = self.registry.active_job_id(dataset)
        if job_id:
            raise WrongState(f"Dataset '{dataset.id}' is used by job '{job_id}', which has not "
                             "finished; cancel the job or wait for it, then delete the dataset.")
        # Row first: a crash after it leaves only files, never a row without its files.
        self.registry.delete(dataset)
        self.store.remove_dataset(dataset.id)

    # -- helpers -------------------------------------------------------------------------

    def _create(self, tenant_id: str, used: int,
                write: Callable[[StagedDataset], str | None]) -> Dataset:
        """Run `write` (which adds the arrays and returns the dataset's name) in a fresh
        folder; register the dataset once every file is in place and the cap allows it."""
        dataset_id = new_id()
        with StagedDataset(self.store, dataset_id) as staged:
            name = write(staged)
            described = staged.finish()
            self.store.check_room(described["bytes"], self.limits.max_data_dir_bytes, used)
            return self.registry.create(tenant_id, dataset_id, name=name, **described)

    def _add_files(self, staged: StagedDataset, files: list[tuple[str, Path]]) -> None:
        archives = [path for _, path in files if starts_with(path, ZIP_MAGIC)]
        if archives and len(files) > 1:
            raise InvalidArray(f"The upload has an .npz and {len(files) - 1} other file(s); "
                               "send either .npy files, one per array, or one .npz.")
        if archives:
            staged.add_npz(archives[0], max_bytes=self.limits.max_dataset_bytes)
            return
        for field_name, path in files:
            if field_name in RESERVED_KEYS:
                raise InvalidArray(f"'{field_name}' is reserved, not an array name; "
                                   f"{FILES_HINT}.")
            staged.add_npy(field_name, path)

def _check_array_count(count: int) -> None:
    if count > MAX_ARRAYS:
        raise LimitExceeded(f"A dataset has at most {MAX_ARRAYS} arrays; received {count}.")


def _dataset_name(value) -> str | None:
    if value is None or (isinstance(value, str) and re.fullmatch(NAME_PATTERN, value)):
        return value
    raise InvalidArray(f"name: expected 1-128 letters, digits, '_', '.' or '-', starting with "
                       f"a letter or digit; received {value!r}.",
                       errors=[{"path": "name", "message": "expected 1-128 letters, digits, "
                                "'_', '.' or '-', starting with a letter or digit"}])


def _dtypes(value, arrays: dict) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArray(f'dtypes: expected an object like {{"x": "float64"}}; received '
                           f"{value!r}.")
    unknown = sorted(set(value) - set(arrays))
    if unknown:
        raise InvalidArray(f"dtypes names array(s) {', '.join(map(repr, unknown))} that the "
                           f"body does not hold; it holds {', '.join(map(repr, arrays))}.")
    return {key: json_dtype(dtype, name=key) for key, dtype in value.items()}
