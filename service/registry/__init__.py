"""The registry: models, their state and versions, datasets and jobs, each owned by a tenant."""

from service.registry.database import Database
from service.registry.models import ModelRegistry

__all__ = ["Database", "ModelRegistry"]
