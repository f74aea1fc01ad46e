"""`.keras` files made in the tests: clean ones saved by Keras, hostile ones edited from them."""

from __future__ import annotations

import io
import json
import struct
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np


def saved(model: keras.Model) -> bytes:
    """The bytes of `model` as Keras saves it (`model.save("x.keras")`)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.keras"
        model.save(path)
        return path.read_bytes()


def randomized(model: keras.Model, seed: int = 0) -> keras.Model:
    """`model` with random weights, so that a load that drops them shows."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(size=w.shape).astype(w.dtype) for w in model.get_weights()])
    return model


def clean_mlp(name: str = "clean-mlp") -> keras.Model:
    """A Sequential of allow-listed layers, compiled with allow-listed settings."""
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dropout(0.2),
                              keras.layers.Dense(3, activation="softmax")], name=name)
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return randomized(model)


def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def pack(files: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in files.items():
            archive.writestr(zipfile.ZipInfo(name), data, compress_type=method)
    return buffer.getvalue()


def edited(data: bytes, edit: Callable[[dict], object]) -> bytes:
    """`data` with its config.json changed in place by `edit`."""
    files = members(data)
    config = json.loads(files["config.json"])
    edit(config)
    files["config.json"] = json.dumps(config).encode()
    return pack(files)


def declaring(data: bytes, member: str, size: int) -> bytes:
    """`data` whose `member` claims, in both zip headers, to unpack to `size` bytes."""
    patched = bytearray(data)
    name = member.encode()
    local = patched.find(b"PK\x03\x04")
    while patched[local + 30: local + 30 + len(name)] != name:
        local = patched.find(b"PK\x03\x04", local + 4)
    central = patched.find(b"PK\x01\x02")
    while patched[central + 46: central + 46 + len(name)] != name:
        central = patched.find(b"PK\x01\x02", central + 4)
    struct.pack_into("<I", patched, local + 22, size)
    struct.pack_into("<I", patched, central + 24, size)
    return bytes(patched)
