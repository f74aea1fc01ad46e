"""Zip archives from clients (`.npz` datasets, `.keras` models), checked before use.

The directory's size is read from the end record before zipfile reads the directory whole;
each member's packing (encryption, method, declared ratio) is checked before it is opened;
reads stop at the declared size, and zipfile checks the CRC, so a member that lies about
either fails while it is read. Nothing is ever extracted by the member's own name.
"""

from __future__ import annotations

import os
import shutil
import struct
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

from service.errors import LimitExceeded, ServiceError

ZIP_MAGIC = b"PK\x03\x04"
# Deflate cannot compress better than about 1032:1; a member that declares more lies.
MAX_COMPRESSION_RATIO = 1100
# zipfile reads the whole central directory; a member takes about 100 bytes of it.
DIRECTORY_BYTES_PER_MEMBER = 1024
# What a damaged or lying member raises while it is read (OSError: a bad header, not a disk).
DATA_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError)
READ_ERRORS = (*DATA_ERRORS, OSError)


def starts_with(path: Path, magic: bytes) -> bool:
    with open(path, "rb") as handle:
        return handle.read(len(magic)) == magic


def _central_directory_bytes(handle: BinaryIO) -> int | None:
    """The size the end-of-central-directory record declares, read before zipfile reads it."""
    end = handle.seek(0, os.SEEK_END)
    tail_bytes = min(end, 22 + 0xFFFF)  # the record, then a comment of at most 64 KiB
    handle.seek(end - tail_bytes)
    tail = handle.read(tail_bytes)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        return None
    (size,) = struct.unpack_from("<I", tail, at + 12)
    return size


def open_zip(path: Path | BinaryIO, *, kind: str, hint: str, max_members: int,
             invalid: type[ServiceError]) -> zipfile.ZipFile:
    """The archive at `path` (or in a binary file), once its directory is known to be small.

    Args:
        kind: what the file is, for messages (".npz", ".keras").
        hint: how to make a good one, appended to "not a zip" messages.
        max_members: the most members the caller accepts; bounds the directory read.
        invalid: the error raised for an unreadable archive.
    """
    if isinstance(path, str | os.PathLike):
        with open(path, "rb") as handle:
            directory_bytes = _central_directory_bytes(handle)
    else:
        directory_bytes = _central_directory_bytes(path)
    if directory_bytes is None:
        raise invalid(f"The {kind} file is not a readable zip archive (no end of central "
                      f"directory). {hint}")
    if directory_bytes > max_members * DIRECTORY_BYTES_PER_MEMBER:
        raise LimitExceeded(f"The {kind} file's directory is {directory_bytes:,} bytes: far "
                            f"more than {max_members} members, the most accepted.")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError) as error:
        raise invalid(f"The {kind} file is not a readable zip archive: {error}.") from None
    if len(archive.infolist()) > max_members:
        raise LimitExceeded(f"The {kind} file has {len(archive.infolist())} members; at most "
                            f"{max_members} are accepted.")
    return archive


def is_plain_name(filename: str) -> bool:
    """A member name that is a file name, not a path (no folders, '..', or drive)."""
    return bool(filename) and not any(c in filename for c in "/\\:\x00") and ".." not in filename


def check_packing(member: zipfile.ZipInfo, *, kind: str, invalid: type[ServiceError]) -> None:
    """Refuse encrypted members, unusual methods and ratios deflate cannot reach."""
    if member.flag_bits & 0x1:
        raise invalid(f"The {kind} member '{member.filename}' is encrypted.")
    if member.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise invalid(f"The {kind} member '{member.filename}' uses compression method "
                      f"{member.compress_type}; expected stored or deflated.")
    if member.file_size > MAX_COMPRESSION_RATIO * max(member.compress_size, 1):
        raise invalid(
            f"The {kind} member '{member.filename}' declares {member.file_size:,} bytes from "
            f"{member.compress_size:,} compressed, a ratio deflate cannot reach; refused as "
            "a zip bomb.")


def copy_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, destination: Path, *,
                kind: str, invalid: type[ServiceError]) -> None:
    """Copy one member to `destination` in chunks, never past its declared size."""
    try:
        with archive.open(member) as source, open(destination, "wb") as target:
            shutil.copyfileobj(source, target, 1 << 20)
    except DATA_ERRORS as error:
        raise invalid(f"The {kind} member '{member.filename}' cannot be read: {error}.") \
            from None


def read_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, *, kind: str,
                invalid: type[ServiceError]) -> bytes:
    """One member's bytes (the caller has capped its declared size)."""
    try:
        with archive.open(member) as source:
            return source.read()  # zipfile stops at the declared size
    except READ_ERRORS as error:
        raise invalid(f"The {kind} member '{member.filename}' cannot be read: {error}.") \
            from None
