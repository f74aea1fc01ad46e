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
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.lib import format as npy_format

from service.datasets.arrays import STORED_DTYPES, check_array_name
from service.errors import InvalidArray, PayloadTooLarge
from service.zips import READ_ERRORS, check_packing, copy_member, is_plain_name, open_zip

NPY_MAGIC = b"\x93NUMPY"
SCAN_BYTES = 1 << 20
MAX_ARRAYS = 16
DATASET_CAP = "KERAS_SERVICE_MAX_DATASET_BYTES"
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
    if min(header.shape) < 0:  # numpy's reader lets them through; two cancel out in the size
        raise InvalidArray(f"Array '{name}' has a negative dimension ({header.describe()}); "
                           "expected sizes of at least 1.")
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
    return open_zip(path, kind=".npz", hint=SAVE_HINT, max_members=MAX_ARRAYS,
                    invalid=InvalidArray)


def npz_members(archive: zipfile.ZipFile, *, max_bytes: int) -> dict[str, zipfile.ZipInfo]:
    """Check an `.npz`'s members without extracting them; return {array name: member}.

    Member names must be `<array name>.npy`; their declared sizes must fit `max_bytes` and be
    reachable by deflate; every member's `.npy` header is read and checked.
    """
    members = archive.infolist()
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
    if not is_plain_name(filename):
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
    check_packing(member, kind=".npz", invalid=InvalidArray)
    try:
        with archive.open(member) as source:
            read_npy_header(source, name=name, file_bytes=member.file_size)
    except READ_ERRORS as error:
        raise InvalidArray(f"The .npz member '{member.filename}' cannot be read: {error}.") \
            from None


def extract_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, destination: Path) -> None:
    """Copy one member to `destination`; a member that lies about its size or CRC fails."""
    copy_member(archive, member, destination, kind=".npz", invalid=InvalidArray)
