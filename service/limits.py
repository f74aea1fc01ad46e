"""Caps on one model and on one request, shared by the web process and the builder.

No Keras import here.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.errors import LimitExceeded


@dataclass(frozen=True)
class BuildLimits:
    """Caps on one model (KERAS_SERVICE_MAX_LAYERS, KERAS_SERVICE_MAX_PARAMS)."""

    max_layers: int = 200
    max_params: int = 50_000_000


@dataclass(frozen=True)
class ImportLimits:
    """Caps on one `.keras` import (KERAS_SERVICE_MAX_IMPORT_BYTES, _IMPORT_MEMORY_BYTES,
    _IMPORT_TIMEOUT), with the model caps its config must meet."""

    build: BuildLimits = BuildLimits()
    max_bytes: int = 1024**3
    memory_bytes: int = 4 * 1024**3
    timeout: float = 120.0
    max_data_dir_bytes: int = 50 * 1024**3

    @classmethod
    def from_config(cls, config) -> ImportLimits:
        return cls(BuildLimits(config.max_layers, config.max_params), config.max_import_bytes,
                   config.import_memory_bytes, config.import_timeout,
                   config.max_data_dir_bytes)


def check_cap(field: str, value: int, cap: int, setting: str) -> None:
    """Raise `LimitExceeded` if a request field's `value` is over `cap`, KERAS_SERVICE_<setting>."""
    if value > cap:
        raise LimitExceeded(
            f"{field} is {value}, over the cap of {cap} (KERAS_SERVICE_{setting}).",
            errors=[{"path": field, "message": f"at most {cap}"}])
