"""Stored arrays, memory-mapped for training: the trainer's way in (no Flask here)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from service.datasets.arrays import check_array_name
from service.errors import NotFound
from service.registry.tables import Dataset
from service.storage import ArtifactStore


def open_arrays(store: ArtifactStore, dataset: Dataset | str,
                names: Iterable[str]) -> dict[str, np.memmap]:
    """Memory-map arrays of a stored dataset, read-only, without reading their data.

    Args:
        store: the artifact store holding `datasets/<id>/<name>.npy`.
        dataset: the registry row (its `arrays` are checked against `names`) or its id.
        names: the arrays wanted, e.g. ["x", "y"].

    Returns:
        {name: numpy.memmap}; pages are read from disk as training touches them.

    Example:

    >>> arrays = open_arrays(store, dataset, ["x", "y"])
    >>> model.fit(arrays["x"], arrays["y"], batch_size=32)
    """
    dataset_id = dataset if isinstance(dataset, str) else dataset.id
    folder = store.dataset_dir(dataset_id)
    opened = {}
    for name in names:
        check_array_name(name)
        path = folder / f"{name}.npy"
        listed = isinstance(dataset, str) or name in dataset.arrays
        if not listed or not path.is_file():
            known = sorted(dataset.arrays) if not isinstance(dataset, str) else sorted(
                p.stem for p in folder.glob("*.npy"))
            raise NotFound(f"Dataset '{dataset_id}' has no array '{name}'; it has "
                           f"{', '.join(known) or 'none'}.")
        opened[name] = np.load(path, mmap_mode="r", allow_pickle=False)
    return opened
