"""What the label routes do: point a model's labels at its versions, list and remove them."""

from __future__ import annotations

import re

from service.errors import InvalidRequest
from service.registry import ModelRegistry, VersionRegistry
from service.registry.labels import LabelRegistry
from service.registry.tables import Label, Model

LABEL_PATTERN = re.compile(r"[a-z][a-z0-9_-]{0,63}")


class LabelService:
    def __init__(self, models: ModelRegistry, versions: VersionRegistry, labels: LabelRegistry):
        self.models = models
        self.versions = versions
        self.labels = labels

    def list(self, tenant_id: str, model_id: str) -> tuple[Model, list[Label]]:
        model = self.models.get(tenant_id, model_id)
        return model, self.labels.list(tenant_id, model.id)

    def get(self, tenant_id: str, model_id: str, label: str) -> Label:
        model = self.models.get(tenant_id, model_id)
        return self.labels.get(tenant_id, model.id, label)

    def set(self, tenant_id: str, model_id: str, label: str, number: int) -> Label:
        check_label_name(label)
        model = self.models.get(tenant_id, model_id)
        # A label may only point at a version that exists (404 otherwise, as for predict).
        version = self.versions.get(tenant_id, model.id, number)
        return self.labels.set(tenant_id, model.id, label, version.number)

    def delete(self, tenant_id: str, model_id: str, label: str) -> None:
        model = self.models.get(tenant_id, model_id)
        self.labels.delete(tenant_id, model.id, label)


def check_label_name(label: str) -> None:
    if not LABEL_PATTERN.fullmatch(label):
        message = (f"expected 1-64 lowercase letters, digits, '_' or '-', starting with a "
                   f"letter (e.g. stable, canary); received '{label}'")
        raise InvalidRequest(f"Label name {message}.", errors=[{"path": "label",
                                                              "message": message}])
