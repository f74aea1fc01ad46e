"""Where a model's files are in a data dir (the names are the store's, see service/storage.py)."""

from __future__ import annotations

from pathlib import Path


def compiled_file(data_dir: Path, model_id: str) -> Path:
    """The model's one compiled file (each compile writes a new name and removes the rest)."""
    found = sorted((Path(data_dir) / "models" / model_id).glob("compiled*.keras"))
    assert len(found) == 1, found
    return found[0]
