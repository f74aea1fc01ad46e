"""The registry: models, their state and versions, datasets and jobs, each owned by a tenant."""

from service.registry.database import Database
from service.registry.datasets import DatasetRegistry
from service.registry.jobs import JobRegistry
from service.registry.models import ModelRegistry
from service.registry.versions import VersionRegistry

__all__ = ["Database", "DatasetRegistry", "JobRegistry", "ModelRegistry", "VersionRegistry"]
