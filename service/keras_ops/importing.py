"""Import an uploaded `.keras` file, in two halves that never run in a web worker.

`describe_import` runs in the builder process, like every spec: config.json (plain JSON,
already bounded) translated into a spec and checked against the allow-list, then built
stateless (layer and parameter caps, no weight memory). Most refusals happen there, at the
cost of a spec check. `import_keras_file` runs in a throw-away process, one per import: the
same checks again, from the file itself, then the model built for real by our builder, and
only then the weights, whose layout must be the one Keras writes for that model. The file's
compile settings are kept when they are on the allow-list; otherwise the model is imported
uncompiled.
"""

from __future__ import annotations

from pathlib import Path

from service.imports.archive import KerasArchive
from service.keras_ops.builder import build_model, describe_model, save_model
from service.keras_ops.config_translation import checked_compile, translate_config
from service.keras_ops.specs import normalize_model_spec
from service.keras_ops.weights import load_checked_weights
from service.limits import BuildLimits, ImportLimits
from service.storage import TEMP_PREFIX


def describe_import(config: dict, limits: BuildLimits) -> dict:
    """Check a `.keras` file's parsed config.json as a spec; describe it as `describe_model`.

    Raises:
        InvalidSpec, LimitExceeded: as for any spec, or where the config is not one Keras
            writes for allow-listed built-ins.
    """
    return describe_model(translate_config(config, limits.max_layers).spec, limits)


def import_keras_file(upload: str, work_dir: str, destination: str,
                      limits: ImportLimits) -> dict:
    """Check the `.keras` file at `upload`, rebuild it and save it at `destination`.

    Args:
        upload: the uploaded file.
        work_dir: a folder for the extracted weights (the model's own, removed on failure).
        destination: where the model's first version goes, written atomically.
        limits: the caps on the file and on the model it describes.

    Returns:
        `{"type", "described", "compile", "sha256", "bytes"}`: the model's kind,
        `describe_model`'s description, the compile spec kept (or None), and the saved
        file's checksum and size.

    Raises:
        ServiceError: a 4xx naming what was refused, and why.
    """
    weights = Path(work_dir) / f"{TEMP_PREFIX}upload.weights.h5"
    with KerasArchive(Path(upload), limits.max_bytes) as archive:
        imported = translate_config(archive.config(), limits.build.max_layers)
        described = describe_model(imported.spec, limits.build)  # caps, before any weight
        model_spec = normalize_model_spec(described["spec"], limits.build.max_layers)
        model = build_model(model_spec).model
        archive.extract_weights(weights)
    try:
        load_checked_weights(model, weights, Path(work_dir))
    finally:
        weights.unlink(missing_ok=True)
    compile_spec = checked_compile(imported.compile, model_spec.outputs)
    saved = save_model(model, compile_spec, destination)
    return {"type": model_spec.kind,
            "described": described,
            "compile": compile_spec, **saved}
