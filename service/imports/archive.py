"""An uploaded `.keras` file, checked as an archive before any of its contents is used.

A `.keras` file is a zip of the three members Keras writes: metadata.json, config.json and
model.weights.h5. Before a member is opened, every name must be one of those (never a path),
and every member unencrypted, stored or deflated, within its size cap and at a ratio
deflate can reach; config.json is then parsed with orjson and its nesting bounded. No
Keras here: the web process refuses most bad files with this alone, and the throw-away
process checks again before it reads anything.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import orjson

from service.api.parsing import json_depth
from service.errors import (
    InvalidModelFile,
    LimitExceeded,
    MalformedRequest,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from service.zips import (
    ZIP_MAGIC,
    check_packing,
    copy_member,
    is_plain_name,
    open_zip,
    read_member,
)

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
CONFIG, METADATA, WEIGHTS = "config.json", "metadata.json", "model.weights.h5"
# A 200-layer config is well under 1 MiB, a lookup's inline vocabulary a few; parsing it
# costs the web worker what a JSON body at KERAS_SERVICE_MAX_BODY_BYTES' default does.
MAX_CONFIG_BYTES = 16 * 1024**2
MAX_METADATA_BYTES = 64 * 1024
# Keras writes three members; a few more are read as names, to say which one is wrong.
MAX_MEMBERS = 8
# Keras' deepest configs (a recurrent layer in a wrapper in a functional graph) nest ~15.
MAX_CONFIG_DEPTH = 40
IMPORT_CAP = "KERAS_SERVICE_MAX_IMPORT_BYTES"
ASSETS = "assets/"
SAVE_HINT = "Save the model with Keras 3: model.save('model.keras')."


def check_media_type(path: Path) -> None:
    """Refuse, from its first bytes, an upload that cannot be a `.keras` file."""
    with open(path, "rb") as handle:
        head = handle.read(len(HDF5_MAGIC))
    if not head:
        raise MalformedRequest(f"The uploaded file is empty; expected a .keras file. {SAVE_HINT}")
    if head == HDF5_MAGIC:
        raise UnsupportedMediaType(
            "The file is a legacy HDF5 (.h5) model; only .keras files are imported. An .h5 "
            "model is deserialized by Keras itself, Lambda bytecode and all, so it is never "
            f"opened here. Load it where you trust it and {SAVE_HINT[0].lower()}{SAVE_HINT[1:]}")
    if not head.startswith(ZIP_MAGIC):
        raise UnsupportedMediaType(f"The file is not a .keras file (a zip archive); its first "
                                   f"bytes are {head[:4]!r}. {SAVE_HINT}")


def read_config(path: Path, max_bytes: int) -> dict:
    """config.json of the `.keras` file at `path`, once every archive check has passed."""
    with KerasArchive(path, max_bytes) as archive:
        return archive.config()


class KerasArchive:
    """An open `.keras` file whose members passed the checks; use as a context manager."""

    def __init__(self, path: Path, max_bytes: int):
        check_media_type(path)
        self.zip = open_zip(path, kind=".keras", hint=SAVE_HINT, max_members=MAX_MEMBERS,
                            invalid=InvalidModelFile)
        try:
            self.members = _checked_members(self.zip, max_bytes)
        except BaseException:
            self.zip.close()
            raise

    def __enter__(self) -> KerasArchive:
        return self

    def __exit__(self, *exc) -> None:
        self.zip.close()

    def config(self) -> dict:
        """config.json, parsed: a JSON object nested at most MAX_CONFIG_DEPTH deep."""
        if METADATA in self.members:
            self._json(METADATA)  # Keras' version stamp: only checked to be JSON
        value = self._json(CONFIG)
        if json_depth(value, MAX_CONFIG_DEPTH) > MAX_CONFIG_DEPTH:
            raise InvalidModelFile(f"config.json is nested deeper than {MAX_CONFIG_DEPTH} "
                                   "levels; no model Keras writes needs that.")
        return value

    def extract_weights(self, destination: Path) -> None:
        copy_member(self.zip, self.members[WEIGHTS], destination, kind=".keras",
                    invalid=InvalidModelFile)

    def _json(self, name: str) -> dict:
        data = read_member(self.zip, self.members[name], kind=".keras", invalid=InvalidModelFile)
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError as error:
            raise InvalidModelFile(f"{name} is not valid JSON: {error}.") from None
        if not isinstance(value, dict):
            raise InvalidModelFile(f"{name} is not a JSON object.")
        return value


def _checked_members(archive: zipfile.ZipFile, max_bytes: int) -> dict[str, zipfile.ZipInfo]:
    caps = {METADATA: MAX_METADATA_BYTES, CONFIG: MAX_CONFIG_BYTES, WEIGHTS: max_bytes}
    members: dict[str, zipfile.ZipInfo] = {}
    for member in archive.infolist():
        name = member.filename
        if name.startswith(ASSETS):
            raise InvalidModelFile(f"The .keras file has assets ('{name}'): a layer that reads "
                                   "files, such as an adapted lookup layer. Only inline "
                                   "vocabularies are accepted: vocabulary=[...].")
        if not is_plain_name(name):
            raise InvalidModelFile(f"The .keras file has a member named '{name}', a path; a "
                                   f"file Keras writes has only {', '.join(caps)}.")
        if name not in caps:
            raise InvalidModelFile(f"The .keras file has an unexpected member '{name}'; a file "
                                   f"Keras writes has only {', '.join(caps)}.")
        if name in members:
            raise InvalidModelFile(f"The .keras file has member '{name}' twice.")
        check_packing(member, kind=".keras", invalid=InvalidModelFile)
        if member.file_size > caps[name]:
            error = PayloadTooLarge if name == WEIGHTS else LimitExceeded
            raise error(f"The .keras member '{name}' unpacks to {member.file_size:,} bytes, "
                        f"over the cap of {caps[name]:,}"
                        + (f" ({IMPORT_CAP})." if name == WEIGHTS else "."))
        members[name] = member
    missing = [name for name in (CONFIG, WEIGHTS) if name not in members]
    if missing:
        raise InvalidModelFile(f"The .keras file has no {' and no '.join(missing)}. {SAVE_HINT}")
    return members
