"""Model and version rows for serving, cached per worker, fresh by the registry stamp.

A prediction needs the model's row (inputs, outputs, latest version, batching) and the
version's (checksum). Reading them from the registry costs two queries, more than the
forward pass of a small model, so each worker keeps them, and drops them all when the
registry stamp moves (any write on this host that changes models, versions or labels) or
after `serving_refresh_ms` (writers on other hosts). Each refresh also tells the cache of
loaded versions which models are gone, so a deleted model's weights are freed.
"""

from __future__ import annotations

from collections.abc import Callable

from service.errors import not_found
from service.registry import ModelRegistry, VersionRegistry
from service.registry.stamp import RegistryStamp, StampedRefresh
from service.registry.tables import Model, Version


class ServingMetadata:
    """Args:
        models, versions: the registries read on a miss.
        stamp: the registry stamp to watch.
        refresh_s: the longest a row is served from the cache without a stamp change.
        loaded_models: the ids of models with loaded versions -> forget these (gone) ids.
    """

    def __init__(self, models: ModelRegistry, versions: VersionRegistry, stamp: RegistryStamp,
                 refresh_s: float, loaded_models: Callable[[], set[str]],
                 forget: Callable[[set[str]], None]):
        self.models = models
        self.versions = versions
        self.loaded_models = loaded_models
        self.forget = forget
        self._fresh = StampedRefresh(stamp, refresh_s, self._reload)
        self._by_id: dict[str, Model] = {}
        self._by_name: dict[tuple[str, str], Model] = {}
        self._versions: dict[tuple[str, int], Version] = {}

    def model(self, tenant_id: str, model_id: str) -> Model:
        self._fresh.check()
        by_id = self._by_id
        model = by_id.get(model_id)
        if model is None:
            model = self._remember(self.models.get(tenant_id, model_id), by_id)
        elif model.tenant_id != tenant_id:
            raise not_found("model", model_id)
        return model

    def model_named(self, tenant_id: str, name: str) -> Model:
        self._fresh.check()
        by_id = self._by_id
        model = self._by_name.get((tenant_id, name))
        if model is None:
            model = self._remember(self.models.get_by_name(tenant_id, name), by_id)
        return model

    def version(self, tenant_id: str, model: Model, number: int) -> Version:
        # Versions never change; the model's row was checked for `tenant_id` already.
        version = self._versions.get((model.id, number))
        if version is None:
            version = self.versions.get(tenant_id, model.id, number)
            self._versions[(model.id, number)] = version
        return version

    def _remember(self, model: Model, by_id: dict) -> Model:
        # Only into the dicts the query started with: if a refresh replaced them meanwhile,
        # this row may be older than the change that caused it, and is not kept.
        if by_id is self._by_id:
            by_id[model.id] = model
            self._by_name[(model.tenant_id, model.name)] = model
        return model

    def _reload(self) -> None:
        # New dicts, not clear(): a thread reading the old ones finishes with them.
        self._by_id, self._by_name, self._versions = {}, {}, {}
        loaded = self.loaded_models()
        gone = loaded - self.models.existing_ids(loaded)
        if gone:
            self.forget(gone)
