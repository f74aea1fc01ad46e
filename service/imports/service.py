"""What `POST /models/import` does: receive a `.keras` file, import it apart, record it.

The upload streams into the new model's own folder. The archive is checked here, without
Keras; its config.json is then checked as a spec by the builder process, like any spec, so
that most bad files cost no new process. Only a file that passes both goes to a throw-away
process (sandbox.py), which checks it all again from the file, loads the weights and writes
the model's first version. Then the registry records the model, `trained`, and its version 1
in one transaction. Any failure removes the folder: a refusal leaves the registry and the
data dir as they were.
"""

from __future__ import annotations

import re
import threading
import uuid
from pathlib import Path
from typing import BinaryIO

from sqlalchemy.exc import IntegrityError

from schemas.common import NAME_PATTERN
from schemas.models import MODEL_TYPES
from service.builder import BuilderPool
from service.datasets import FileUpload, ReceivedUpload
from service.errors import Busy, Conflict, InvalidModelFile, InvalidRequest, MalformedRequest
from service.imports.archive import read_config
from service.imports.sandbox import SandboxLimits, run_isolated
from service.limits import ImportLimits
from service.model_service import DESCRIBED_COLUMNS
from service.registry import ModelRegistry
from service.registry.tables import Model, Version
from service.storage import TEMP_PREFIX, ArtifactStore, new_id, sha256_of

FILE_FIELD = "file"
FORM_HINT = ("An import takes the .keras file in the field 'file' and an optional text "
             "field 'name' (curl -F file=@model.keras -F name=mnist)")
IMPORT_TARGET = "service.keras_ops.importing:import_keras_file"


class ImportService:
    def __init__(self, registry: ModelRegistry, store: ArtifactStore, builder: BuilderPool,
                 limits: ImportLimits):
        self.registry = registry
        self.store = store
        self.builder = builder
        self.limits = limits
        # One import at a time per web worker: each one costs a TensorFlow process.
        self._slot = threading.Semaphore(1)

    def import_file(self, tenant_id: str, upload: FileUpload) -> Model:
        """Import the `.keras` file of a multipart upload as a new, trained model."""
        used = self.store.check_room(upload.content_length or 0,
                                     self.limits.max_data_dir_bytes)
        model_id = new_id()
        folder = self.store.model_dir(model_id)
        folder.mkdir(parents=True)
        try:
            part = _UploadPart(folder)
            try:
                received = upload.receive(part.open)
            finally:
                part.close()
            path, name = _uploaded_file(received.files), _form_name(received)
            config = read_config(path, self.limits.max_bytes)
            self.builder.call("describe_import", config, self.limits.build)
            name = name or _file_name(config)
            self._check_name_free(tenant_id, name)
            destination = self.store.version_path(model_id, 1)
            result = _checked_answer(self._run(path, folder, destination), destination)
            path.unlink()
            self.store.check_room(result["bytes"], self.limits.max_data_dir_bytes, used)
            return self._record(tenant_id, model_id, name, result)
        except BaseException:
            self.store.remove_model(model_id)
            raise

    def _run(self, upload: Path, folder: Path, destination: Path) -> dict:
        if not self._slot.acquire(blocking=False):
            raise Busy("Another import is running in this worker; retry in a few seconds.",
                       headers={"Retry-After": "10"})
        try:
            # The largest file it writes is the version: the weights (at most the upload)
            # and up to three optimizer slots per weight.
            limits = SandboxLimits(self.limits.memory_bytes, self.limits.timeout,
                                   file_bytes=4 * self.limits.max_bytes + 64 * 1024**2)
            return run_isolated(IMPORT_TARGET, str(upload), str(folder), str(destination),
                                self.limits, limits=limits)
        finally:
            self._slot.release()

    def _check_name_free(self, tenant_id: str, name: str) -> None:
        if self.registry.list(tenant_id, limit=1, offset=0, name=name)[1]:
            raise _name_taken(name)

    def _record(self, tenant_id: str, model_id: str, name: str, result: dict) -> Model:
        """The model and its version 1, together: the file is already in place."""
        described = {key: result["described"][key] for key in DESCRIBED_COLUMNS}
        model = Model(id=model_id, tenant_id=tenant_id, name=name, type=result["type"],
                      state="trained", revision=1, tags=[], compile=result["compile"],
                      version=1, artifact="v1.keras", artifact_sha256=result["sha256"],
                      **described)
        version = Version(id=new_id(), tenant_id=tenant_id, model_id=model_id, number=1,
                          sha256=result["sha256"], bytes=result["bytes"], metrics={},
                          job_id=None)
        database = self.registry.db
        try:
            with database.transaction() as session:
                session.add_all([model, version])
        except IntegrityError:
            raise _name_taken(name) from None
        database.touch_stamp()
        return model


def _checked_answer(answer, destination: Path) -> dict:
    """The throw-away process's answer, in the shape the registry needs, with the version
    file's checksum and size measured here rather than taken from it."""
    described = answer.get("described") if isinstance(answer, dict) else None
    if (not isinstance(described, dict) or any(key not in described for key in DESCRIBED_COLUMNS)
            or answer.get("type") not in MODEL_TYPES
            or not isinstance(answer.get("compile"), dict | None) or not destination.is_file()):
        raise InvalidModelFile("The import's process answered in a shape it never does; "
                               "nothing was imported.")
    return {**answer, "sha256": sha256_of(destination), "bytes": destination.stat().st_size}


def _name_taken(name: str) -> Conflict:
    return Conflict(f"A model named '{name}' already exists; model names are unique. Give "
                    "the import another name (-F name=...) or rename the existing model.")


class _UploadPart:
    """The upload's one file, streamed into the model's folder (werkzeug's stream factory)."""

    def __init__(self, folder: Path):
        self.path = folder / f"{TEMP_PREFIX}{uuid.uuid4().hex}.keras"
        self.handle: BinaryIO | None = None

    def open(self, *args, **kwargs) -> BinaryIO:
        if self.handle is not None:
            raise InvalidModelFile(f"An import takes one file, in the field '{FILE_FIELD}'; "
                                   f"the form has more. {FORM_HINT}.")
        self.handle = open(self.path, "w+b")
        return self.handle

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


def _form_name(received: ReceivedUpload) -> str | None:
    name = received.only_text_field("name", MalformedRequest, FORM_HINT)
    if name is not None and not re.fullmatch(NAME_PATTERN, name):
        raise InvalidRequest(f"name: expected 1-128 letters, digits, '_', '.' or '-', starting "
                             f"with a letter or digit; received {name[:80]!r}.",
                             errors=[{"path": "name", "message": "invalid name"}])
    return name


def _uploaded_file(files: list[tuple[str, Path]]) -> Path:
    if not files:
        raise MalformedRequest(f"The form has no file; expected the .keras file in the field "
                               f"'{FILE_FIELD}'. {FORM_HINT}.")
    field, path = files[0]
    if field != FILE_FIELD:
        raise MalformedRequest(f"The file is in the field '{field}'; expected '{FILE_FIELD}'. "
                               f"{FORM_HINT}.")
    return path


def _file_name(config: dict) -> str:
    model_config = config.get("config")
    name = model_config.get("name") if isinstance(model_config, dict) else None
    if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name):
        raise InvalidModelFile(f"The model's name in the file, {name!r:.80}, cannot name a "
                               f"model here; give one with the form field 'name'. {FORM_HINT}.")
    return name
