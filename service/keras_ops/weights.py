"""An uploaded weights file, loaded into a model the service built, once its layout is known.

Keras' loader reads the datasets the model asks for, by path; HDF5 itself can make such a
path a link to another file, a dataset stored in an external file, a virtual dataset over
other files, or data behind a filter plugin. So before Keras opens the file, its whole
layout is walked (names and metadata only, no data read) and must equal, path for path,
shape for shape and dtype for dtype, the layout Keras writes for the model we rebuilt.
The optimizer's state is never read: an imported model gets a fresh optimizer.
"""

from __future__ import annotations

import re
from pathlib import Path

import h5py

from service.errors import InvalidSpec
from service.storage import TEMP_PREFIX

# Top-level groups Keras writes that the loader of an uncompiled model never opens.
UNREAD_GROUPS = ("optimizer",)
MAX_DEPTH = 32
MAX_OBJECTS = 200_000
MAX_NAME_CHARS = 256
NUMERIC_KINDS = "fiub"
LAYER_VARS = re.compile(r"layers/[^/]+/vars")


def _refuse(message: str) -> InvalidSpec:
    message = f"model.weights.h5: {message}"
    return InvalidSpec(message, errors=[{"path": "model.weights.h5", "message": message}])


def _name_attribute(group: h5py.Group, path: str) -> str | None:
    keys = list(group.attrs.keys())
    if not keys:
        return None
    if keys != ["name"]:
        raise _refuse(f"group '{path}' has attributes {keys[:5]}; Keras writes only 'name'")
    value = group.attrs["name"]
    if not isinstance(value, str) or len(value) > MAX_NAME_CHARS:
        raise _refuse(f"group '{path}' has a 'name' that is not a short string")
    return value


def _dataset_entry(dataset: h5py.Dataset, path: str) -> tuple:
    if dataset.is_virtual or dataset.external:
        raise _refuse(f"'{path}' stores its data in other files; only plain datasets are read")
    if dataset.id.get_create_plist().get_nfilters():
        raise _refuse(f"'{path}' is compressed or filtered; Keras writes plain datasets")
    if dataset.dtype.kind not in NUMERIC_KINDS or dataset.dtype.fields or dataset.attrs.keys():
        raise _refuse(f"'{path}' is not a plain numeric array ({dataset.dtype})")
    return ("dataset", tuple(dataset.shape), dataset.dtype.str)


def layout(file: h5py.File, skip: tuple[str, ...] = ()) -> dict[str, tuple]:
    """Every object of an HDF5 file by path: ("group", name attribute) or ("dataset",
    shape, dtype). Only hard links are followed; anything else is refused.

    Raises:
        InvalidSpec: soft or external links, external or virtual or filtered datasets,
            named types, non-numeric data, or more objects or depth than any model needs.
    """
    found: dict[str, tuple] = {}
    stack = [(file, "", 0)]
    while stack:
        group, prefix, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _refuse(f"'{prefix}' is nested more than {MAX_DEPTH} groups deep")
        for key in group.keys():
            path = f"{prefix}/{key}" if prefix else key
            if not prefix and key in skip:
                continue
            if len(key) > MAX_NAME_CHARS or len(found) >= MAX_OBJECTS:
                raise _refuse("more objects, or longer names, than a model's weights have")
            if not isinstance(group.get(key, getlink=True), h5py.HardLink):
                raise _refuse(f"'{path}' is a link to another object or file")
            item = group[key]
            if isinstance(item, h5py.Group):
                name = _name_attribute(item, path)
                # A layer's own name tells swapped layers apart; Keras names the sublayers
                # it makes inside one (a Dropout in an attention layer) per process.
                found[path] = ("group", name if LAYER_VARS.fullmatch(path) else None)
                stack.append((item, path, depth + 1))
            elif isinstance(item, h5py.Dataset):
                found[path] = _dataset_entry(item, path)
            else:
                raise _refuse(f"'{path}' is a {type(item).__name__}, not a group or dataset")
    return found


def _describe(entry: tuple | None) -> str:
    if entry is None:
        return "nothing"
    if entry[0] == "group":
        return f"a group named {entry[1]!r}" if entry[1] else "a group"
    return f"an array of shape {entry[1]} and dtype {entry[2]}"


def load_checked_weights(model, weights_path: Path, scratch_dir: Path) -> None:
    """Load `weights_path` into `model` (built by the service), if its layout is exactly the
    one Keras writes for `model`.

    Args:
        model: the rebuilt, uncompiled Keras model.
        weights_path: the uploaded `model.weights.h5`, extracted; its name must end in
            `.weights.h5`.
        scratch_dir: a folder for the expected layout's file.

    Raises:
        InvalidSpec: naming the first path that differs, or what HDF5 could not read.
    """
    expected_path = Path(scratch_dir) / f"{TEMP_PREFIX}expected.weights.h5"
    model.save_weights(expected_path)
    with h5py.File(expected_path, "r") as file:
        expected = layout(file)
    expected_path.unlink()
    try:
        with h5py.File(weights_path, "r") as file:
            found = layout(file, skip=UNREAD_GROUPS)
    except (OSError, ValueError, RuntimeError) as error:
        raise _refuse(f"not a readable HDF5 file ({error})") from None
    for path in sorted(set(expected) | set(found)):
        if expected.get(path) != found.get(path):
            raise _refuse(f"'{path}' is {_describe(found.get(path))}; the model in config.json "
                          f"has {_describe(expected.get(path))} there")
    model.load_weights(weights_path)
