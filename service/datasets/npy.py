"""Checks of uploaded `.npy` and `.npz` files, made on the bytes before numpy loads anything.

A `.npy` header is read with numpy's own parser (a literal, never pickle) and must describe
a plain numeric, C-ordered array whose data fills the rest of the file exactly. The data is
then read once, in fixed-size chunks, to hash it and, for floats, to find NaN or infinity.
An `.npz` is a zip: its directory is checked (member names, declared sizes, compression
ratio) and every member's header read before a byte is extracted.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.lib import format as npy_format

from service.datasets.arrays import STORED_DTYPES, check_array_name
from service.errors import InvalidArray, LimitExceeded, PayloadTooLarge

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"
SCAN_BYTES = 1 << 20
MAX_ARRAYS = 16
DATASET_CAP = "KERAS_SERVICE_MAX_DATASET_BYTES"
# Deflate cannot compress better than about 1032:1; a member that declares more lies.
MAX_COMPRESSION_RATIO = 1100
# A zip's central directory is read whole by zipfile; numpy.savez writes ~100 bytes a member.
MAX_CENTRAL_DIRECTORY_BYTES = MAX_ARRAYS * 1024
SAVE_HINT = "Save arrays with numpy.save(path, array) (or numpy.savez for one .npz)."


@dataclass(frozen=True)
class NpyHeader:
    shape: tuple[int, ...]
    dtype: np.dtype
    data_offset: int

    @property
    def data_bytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    def describe(self) -> str:
        return f"shape {self.shape} {self.dtype.name}"


@dataclass(frozen=True)
class CheckedArray:
    """A `.npy` file that passed every check: what the registry records of it."""

    shape: tuple[int, ...]
    dtype: str
    bytes: int
    sha256: str


def starts_with(path: Path, magic: bytes) -> bool:
    with open(path, "rb") as handle:
        return handle.read(len(magic)) == magic


def read_npy_header(handle: BinaryIO, *, name: str, file_bytes: int) -> NpyHeader:
    """Read and check the header of a `.npy` (handle at its start), leaving the data unread.

    Raises InvalidArray unless the file is a version 1.0/2.0 `.npy` of a numeric dtype
    (bool, int8..int64, uint8..uint64, float16/32/64; never object, so never pickle), in C
    order, with at least one dimension and one element, and exactly `file_bytes` long.
    """
    try:
        version = npy_format.read_magic(handle)
    except ValueError:
        raise InvalidArray(f"Array '{name}' is not a .npy file: it does not start with "
                           f"numpy's magic string \\x93NUMPY. {SAVE_HINT}") from None
    readers = {(1, 0): npy_format.read_array_header_1_0, (2, 0): npy_format.read_array_header_2_0}
    if version not in readers:
        raise InvalidArray(f"Array '{name}' is a .npy file of format version "
                           f"{version[0]}.{version[1]}; expected 1.0 or 2.0, which numpy.save "
                           "writes for numeric arrays.")
    try:
        shape, fortran_order, dtype = readers[version](handle)
    except (ValueError, TypeError) as error:
        raise InvalidArray(f"Array '{name}' has a malformed .npy header: {error}") from None
    header = NpyHeader(tuple(int(n) for n in shape), dtype, handle.tell())
    _check_dtype(header.dtype, name)
    if fortran_order:
        raise InvalidArray(f"Array '{name}' is stored in Fortran order; expected C order. "
                           "Save numpy.ascontiguousarray(array) instead.")
    if not header.shape:
        raise InvalidArray(f"Array '{name}' is zero-dimensional (a single number); expected "
                           "at least one dimension, the rows.")
    if 0 in header.shape:
        raise InvalidArray(f"Array '{name}' is empty ({header.describe()}); expected at least "
                           "one row of at least one value.")
    held = file_bytes - header.data_offset
    if held < header.data_bytes:
        raise InvalidArray(f"Array '{name}' is truncated: its header says {header.describe()}, "
                           f"{header.data_bytes:,} bytes of data; the file holds {held:,}.")
    if held > header.data_bytes:
        raise InvalidArray(f"Array '{name}' has {held - header.data_bytes:,} bytes after its "
                           f"data ({header.describe()}); expected a plain .npy. {SAVE_HINT}")
    return header


def _check_dtype(dtype: np.dtype, name: str) -> None:
    if dtype.hasobject:
        raise InvalidArray(f"Array '{name}' holds Python objects (dtype object); expected a "
                           f"numeric dtype ({', '.join(STORED_DTYPES)}). Pickled data is never "
                           "loaded.")
    if dtype.fields is not None or dtype.subdtype is not None or dtype.name not in STORED_DTYPES:
        raise InvalidArray(f"Array '{name}' has dtype {dtype.str!r} ({dtype.name}); expected "
                           f"one of {', '.join(STORED_DTYPES)}.")
    if not dtype.isnative:
        raise InvalidArray(f"Array '{name}' is stored big-endian ({dtype.str!r}); expected "
                           f"native byte order. Save array.astype('{dtype.newbyteorder('=').str}')"
                           " instead.")


def check_npy_file(path: Path, *, name: str) -> CheckedArray:
    """Check a `.npy` file completely: header, size, finite floats; and hash it, in one read."""
    with open(path, "rb") as handle:
        header = read_npy_header(handle, name=name, file_bytes=os.fstat(handle.fileno()).st_size)
        handle.seek(0)
        digest = hashlib.sha256(handle.read(header.data_offset))
        _scan_data(handle, header, digest, name)
    return CheckedArray(header.shape, header.dtype.name,
                        header.data_offset + header.data_bytes, digest.hexdigest())


def _scan_data(handle: BinaryIO, header: NpyHeader, digest, name: str) -> None:
    # A read buffer of fixed size, not a memory map: mapped pages would count against the
    # worker's memory until the kernel reclaims them, for a file of up to gigabytes.
    itemsize = header.dtype.itemsize
    buffer = bytearray(max(1, SCAN_BYTES // itemsize) * itemsize)
    view = memoryview(buffer)
    check_finite = header.dtype.kind == "f"
    done = 0
    while done < header.data_bytes:
        size = min(len(buffer), header.data_bytes - done)
        if handle.readinto(view[:size]) != size:
            raise InvalidArray(f"Array '{name}' changed while it was read; upload it again.")
        digest.update(view[:size])
        if check_finite:
            finite = np.isfinite(np.frombuffer(buffer, header.dtype, size // itemsize))
            if not finite.all():
                _refuse_non_finite(finite, done // itemsize, header, name)
        done += size


def _refuse_non_finite(finite: np.ndarray, first_item: int, header: NpyHeader, name: str):
    index = first_item + int(np.argmin(finite))
    position = ", ".join(str(int(i)) for i in np.unravel_index(index, header.shape))
    raise InvalidArray(f"Array '{name}' holds NaN or infinity at [{position}]; expected finite "
                       "numbers. Clean the data first (numpy.nan_to_num, or drop those rows).")


# -- .npz ------------------------------------------------------------------------------------

def open_npz(path: Path | BinaryIO) -> zipfile.ZipFile:
    """The `.npz` at `path` (or in a binary file) as a zip, once its directory is known
    to be small."""
    if isinstance(path, str | os.PathLike):
        with open(path, "rb") as handle:
            directory_bytes = _central_directory_bytes(handle)
    else:
        directory_bytes = _central_directory_bytes(path)
    if directory_bytes is None:
        raise InvalidArray("The .npz file is not a readable zip archive (no end of central "
                           f"directory). {SAVE_HINT}")
    if directory_bytes > MAX_CENTRAL_DIRECTORY_BYTES:
        raise LimitExceeded(f"The .npz file's directory is {directory_bytes:,} bytes: far more "
                            f"than {MAX_ARRAYS} members, the most a dataset may have.")
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError) as error:
        raise InvalidArray(f"The .npz file is not a readable zip archive: {error}.") from None


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


def npz_members(archive: zipfile.ZipFile, *, max_bytes: int) -> dict[str, zipfile.ZipInfo]:
    """Check an `.npz`'s members without extracting them; return {array name: member}.

    Member names must be `<array name>.npy`; their declared sizes must fit `max_bytes` and be
    reachable by deflate; every member's `.npy` header is read and checked.
    """
    members = archive.infolist()
    if len(members) > MAX_ARRAYS:
        raise LimitExceeded(f"The .npz file has {len(members)} members; a dataset has at most "
                            f"{MAX_ARRAYS} arrays.")
    found: dict[str, zipfile.ZipInfo] = {}
    for member in members:
        name = _member_array_name(member)
        if name in found:
            raise InvalidArray(f"The .npz file has member '{member.filename}' twice.")
        found[name] = member
    declared = sum(member.file_size for member in members)
    if declared > max_bytes:
        raise PayloadTooLarge(f"The .npz file unpacks to {declared:,} bytes; the cap is "
                              f"{max_bytes:,} bytes ({DATASET_CAP}).")
    for name, member in found.items():
        _check_member(archive, member, name)
    return found


def _member_array_name(member: zipfile.ZipInfo) -> str:
    filename = member.filename
    if "/" in filename or "\\" in filename or ".." in filename:
        raise InvalidArray(f"The .npz file has a member named '{filename}', a path; expected "
                           "plain names like x.npy, one per array.")
    if not filename.endswith(".npy"):
        raise InvalidArray(f"The .npz file has a member '{filename}' that is not a .npy file; "
                           "expected one <name>.npy per array, as numpy.savez writes.")
    try:
        return check_array_name(filename[: -len(".npy")])
    except InvalidArray as error:
        raise InvalidArray(f"The .npz member '{filename}': {error.detail}") from None


def _check_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, name: str) -> None:
    if member.flag_bits & 0x1:
        raise InvalidArray(f"The .npz member '{member.filename}' is encrypted.")
    if member.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise InvalidArray(f"The .npz member '{member.filename}' uses compression method "
                           f"{member.compress_type}; expected stored or deflated (numpy.savez "
                           "or numpy.savez_compressed).")
    if member.file_size > MAX_COMPRESSION_RATIO * max(member.compress_size, 1):
        raise InvalidArray(
            f"The .npz member '{member.filename}' declares {member.file_size:,} bytes from "
            f"{member.compress_size:,} compressed, a ratio deflate cannot reach; refused as "
            "a zip bomb.")
    try:
        with archive.open(member) as source:
            read_npy_header(source, name=name, file_bytes=member.file_size)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
        raise InvalidArray(f"The .npz member '{member.filename}' cannot be read: {error}.") \
            from None


def extract_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, destination: Path) -> None:
    """Copy one member to `destination` in chunks; zipfile stops at the declared size and
    checks the CRC, so a member that lies about either fails here."""
    try:
        with archive.open(member) as source, open(destination, "wb") as target:
            shutil.copyfileobj(source, target, 1 << 20)
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise InvalidArray(f"The .npz member '{member.filename}' cannot be read: {error}.") \
            from None
