"""Caps on one model and on one request, shared by the web process and the builder.

No Keras import here.
"""

from dataclasses import dataclass

from service.errors import LimitExceeded


@dataclass(frozen=True)
class BuildLimits:
    """Caps on one model (KERAS_SERVICE_MAX_LAYERS, KERAS_SERVICE_MAX_PARAMS)."""

    max_layers: int = 200
    max_params: int = 50_000_000


def check_cap(field: str, value: int, cap: int, setting: str) -> None:
    """Raise `LimitExceeded` if a request field's `value` is over `cap`, KERAS_SERVICE_<setting>."""
    if value > cap:
        raise LimitExceeded(
            f"{field} is {value}, over the cap of {cap} (KERAS_SERVICE_{setting}).",
            errors=[{"path": field, "message": f"at most {cap}"}])
