"""What a view needs from the app: its services and the caller's tenant."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app, g, request

from service.builder import BuilderPool
from service.config import Config
from service.datasets import DatasetService
from service.imports.service import ImportService
from service.inference import InferenceService
from service.label_service import LabelService
from service.model_service import ModelService, etag_of
from service.registry import Database
from service.storage import ArtifactStore
from service.tfserving import TFServing
from service.training_service import TrainingService


@dataclass
class Services:
    config: Config
    database: Database
    store: ArtifactStore
    builder: BuilderPool
    models: ModelService
    datasets: DatasetService
    training: TrainingService
    inference: InferenceService
    labels: LabelService
    tfserving: TFServing
    imports: ImportService


def services() -> Services:
    return current_app.extensions["keras_service"]


def tenant_id() -> str:
    """The caller's tenant, as the API key check found it (service/auth/guard.py)."""
    return g.caller.tenant_id


def if_match() -> str | None:
    return request.headers.get("If-Match")


def with_etag(model, status: int = 200):
    """A model answer with its ETag, for If-Match on the next change."""
    return model, status, {"ETag": etag_of(model)}


def page(items: list, total: int, query: dict) -> dict:
    """A list answer: one page of `items`, how many there are in all, and the page asked for."""
    return {"items": items, "total": total, "limit": query["limit"], "offset": query["offset"]}
