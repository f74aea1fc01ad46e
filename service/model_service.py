"""What the model routes do: each public method is one request's work, without HTTP.

The builder process checks and builds every spec; the registry records the outcome only
once the builder accepted it (and, for compile, once the `.keras` file is in place), so a
rejected request leaves the model exactly as it was.
"""

from __future__ import annotations

from service.builder import BuilderPool
from service.errors import InvalidSpec, NotFound, PreconditionFailed, WrongState
from service.limits import BuildLimits
from service.registry import ModelRegistry
from service.registry.tables import Model
from service.storage import ArtifactStore

EDITABLE_STATES = ("draft", "compiled")
COMPILABLE_STATES = ("draft", "compiled", "trained")
DESCRIBED_COLUMNS = ("spec", "layers", "inputs", "outputs", "params", "summary")


class ModelService:
    def __init__(self, registry: ModelRegistry, store: ArtifactStore, builder: BuilderPool,
                 limits: BuildLimits):
        self.registry = registry
        self.store = store
        self.builder = builder
        self.limits = limits
        self._catalog: dict | None = None

    # -- reading -------------------------------------------------------------------------

    def get(self, tenant_id: str, model_id: str) -> Model:
        return self.registry.get(tenant_id, model_id)

    def list(self, tenant_id: str, **query) -> tuple[list[Model], int]:
        return self.registry.list(tenant_id, **query)

    def catalog(self) -> dict:
        # The allow-list is fixed for the life of the process: ask the builder once.
        if self._catalog is None:
            self._catalog = self.builder.call("catalog_document")
        return self._catalog

    # -- changing --------------------------------------------------------------------------

    def create(self, tenant_id: str, request: dict) -> Model:
        spec = {"type": request["type"], "layers": request.get("layers", [])}
        if request["type"] == "functional":
            spec.update(inputs=request["inputs"], outputs=request["outputs"])
        described = self._describe(spec)
        return self.registry.create(tenant_id, name=request["name"], type=request["type"],
                                    state="draft", tags=request.get("tags", []), **described)

    def patch(self, tenant_id: str, model_id: str, changes: dict, if_match=None) -> Model:
        model = self._for_change(tenant_id, model_id, if_match)
        return self.registry.update(model, **changes)

    def delete(self, tenant_id: str, model_id: str, if_match=None) -> None:
        model = self._for_change(tenant_id, model_id, if_match)
        if model.state == "training":
            raise WrongState(f"Model '{model.id}' is training; cancel its job before "
                             "deleting it.")
        # Row first: a crash after it leaves only files, which the start-up sweep removes.
        self.registry.delete(model)
        self.store.remove_model(model.id)

    def add_layer(self, tenant_id: str, model_id: str, layer: dict, if_match=None) -> Model:
        model = self._for_layer_change(tenant_id, model_id, if_match)
        spec = {**model.spec, "layers": [*model.spec["layers"], layer]}
        return self._replace_spec(model, spec)

    def remove_layer(self, tenant_id: str, model_id: str, index: int, if_match=None) -> Model:
        model = self._for_layer_change(tenant_id, model_id, if_match)
        layers = list(model.spec["layers"])
        if not 0 <= index < len(layers):
            raise NotFound(f"Model '{model.id}' has no layer at index {index}; it has "
                           f"{len(layers)} layer(s), indexed 0 to {len(layers) - 1}.")
        del layers[index]
        return self._replace_spec(model, {**model.spec, "layers": layers})

    def compile(self, tenant_id: str, model_id: str, compile_spec: dict, if_match=None) -> Model:
        model = self._for_change(tenant_id, model_id, if_match)
        if model.state not in COMPILABLE_STATES:
            raise WrongState(f"Model '{model.id}' is {model.state}; only a model in state "
                             f"{' or '.join(COMPILABLE_STATES)} can be compiled.")
        if not model.inputs:
            raise InvalidSpec(
                f"Model '{model.id}' has no input shape, so it cannot be compiled. Give its "
                "first layer `input_shape` (or `input_dim`), e.g. "
                '{"type": "Dense", "units": 10, "input_dim": 100}.',
                errors=[{"path": "layers[0].input_shape", "message": "required to compile"}])
        path = self.store.new_compiled_path(model.id)
        # A trained model keeps its latest weights; only the training settings change.
        weights_from = (str(self.store.artifact_path(model.id, model.artifact))
                        if model.state == "trained" else None)
        try:
            saved = self.builder.call("save_compiled", model.spec, compile_spec, str(path),
                                      self.limits, weights_from=weights_from)
            # The file is in place; only now does the registry record it.
            updated = self.registry.update(
                model, state="trained" if weights_from else "compiled",
                compile=saved["compile"], artifact_sha256=saved["sha256"], artifact=path.name)
        except BaseException:
            self.store.remove_file(path)
            raise
        self.store.keep_compiled(model.id, path.name)
        return updated

    def summary_text(self, tenant_id: str, model_id: str) -> str:
        model = self.get(tenant_id, model_id)
        if model.summary is None:
            raise WrongState(f"Model '{model.id}' has no input shape yet, so Keras cannot "
                             "summarize it; give its first layer `input_shape` or `input_dim`.")
        return model.summary

    # -- helpers ---------------------------------------------------------------------------

    def _describe(self, spec: dict) -> dict:
        """Check and build `spec` in the builder; return the registry columns it fills."""
        described = self.builder.call("describe_model", spec, self.limits)
        return {key: described[key] for key in DESCRIBED_COLUMNS}

    def _for_change(self, tenant_id: str, model_id: str, if_match) -> Model:
        model = self.registry.get(tenant_id, model_id)
        check_if_match(model, if_match)
        return model

    def _for_layer_change(self, tenant_id: str, model_id: str, if_match) -> Model:
        model = self._for_change(tenant_id, model_id, if_match)
        if model.type != "sequential":
            raise WrongState(f"Model '{model.id}' is functional: its graph is given whole "
                             "when it is created (POST /models with inputs, layers, outputs). "
                             "Adding and removing layers is for sequential models.")
        if model.state not in EDITABLE_STATES:
            raise WrongState(f"Model '{model.id}' is {model.state}; its layers can no longer "
                             "change. Create a new model to change the architecture.")
        return model

    def _replace_spec(self, model: Model, spec: dict) -> Model:
        described = self._describe(spec)
        was_compiled = model.state == "compiled"
        # A new layer invalidates the compiled file: the model goes back to draft.
        updated = self.registry.update(model, state="draft", compile=None,
                                       artifact_sha256=None, artifact=None, **described)
        if was_compiled:
            self.store.keep_compiled(model.id, None)
        return updated


def etag_of(model: Model) -> str:
    return f'"{model.id[:8]}-{model.revision}"'


def check_if_match(model: Model, if_match: str | None) -> None:
    """Refuse a change made against a version of the model the client has not seen."""
    if if_match is not None and if_match not in ("*", etag_of(model)):
        raise PreconditionFailed(
            f"If-Match {if_match} does not match the model's current ETag "
            f"{etag_of(model)}; read the model again and retry.")
