"""Binary predict bodies: `.npy` (one input) and `.npz` (one member per input) in and out.

A request body is checked before numpy reads its data: the `.npy` header is parsed as a
literal (never pickle) and must describe a plain numeric array that fills the body exactly;
an `.npz`'s directory and every member's header are checked before a member is read. The
arrays then get the checks JSON arrays get (`inputs.checked_inputs`).
"""

from __future__ import annotations

import io
import zipfile
import zlib

import numpy as np
from numpy.lib import format as npy_format

from service.datasets.arrays import INLINE_CAP
from service.datasets.npy import npz_members, open_npz, read_npy_header
from service.errors import InvalidArray, LimitExceeded, MalformedRequest
from service.tensors import check_names

NPY = "application/x-npy"
NPZ = "application/x-npz"


def read_npy(body: bytes, name: str) -> np.ndarray:
    """The array of a `.npy` body, read-only, without a copy."""
    header = read_npy_header(io.BytesIO(body), name=name, file_bytes=len(body))
    count = int(np.prod(header.shape))
    return np.frombuffer(body, header.dtype, count, header.data_offset).reshape(header.shape)


def npy_columns(body: bytes, specs: list[dict]) -> dict:
    """A `.npy` body as {input name: array}: only for models with one input."""
    if len(specs) > 1:
        names = ", ".join(spec["name"] for spec in specs)
        raise MalformedRequest(
            f"The model has {len(specs)} inputs ({names}); a .npy body holds one array. Send "
            f"one .npz with a member per input (numpy.savez(file, {specs[0]['name']}=..., "
            f"...)) and Content-Type: {NPZ}.")
    return {specs[0]["name"]: read_npy(body, specs[0]["name"])}


def npz_columns(body: bytes, specs: list[dict], max_elements: int) -> dict:
    """An `.npz` body as {input name: array}; its members must be the model's inputs."""
    archive = open_npz(io.BytesIO(body))
    declared = sum(member.file_size for member in archive.infolist())
    if declared > max_elements * 8:  # 8: the widest dtype's bytes per number
        raise LimitExceeded(f"The .npz body unpacks to {declared:,} bytes, more than "
                            f"{max_elements:,} numbers can take ({INLINE_CAP}).")
    members = npz_members(archive, max_bytes=max_elements * 8)
    check_names(members, [spec["name"] for spec in specs], "the .npz body", "input")
    columns = {}
    for name, member in members.items():
        try:
            data = archive.read(member)  # zipfile checks the declared size and the CRC
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
            raise InvalidArray(f"The .npz member '{member.filename}' cannot be read: "
                               f"{error}.") from None
        columns[name] = read_npy(data, name)
    return columns


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    npy_format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            archive.writestr(f"{name}.npy", npy_bytes(array))
    return buffer.getvalue()
