"""Pure Keras code, no Flask: JSON model specs to Keras models, safely.

The web process calls only these, in a recycled builder process:

- `catalog_document()`: the allow-list, for GET /catalog.
- `describe_model(spec, limits)`: check and describe a spec without allocating weights.
- `save_compiled(spec, compile_spec, path, limits)`: build, compile and save a `.keras` file.
- `describe_import(config, limits)`: check an uploaded `.keras` file's config.json as a spec.

The rest of an import, `importing.import_keras_file`, runs in a throw-away process instead.
"""

from service.keras_ops.builder import BuildLimits, describe_model, save_compiled
from service.keras_ops.catalog_document import catalog_document
from service.keras_ops.importing import describe_import

__all__ = ["BuildLimits", "catalog_document", "describe_import", "describe_model",
           "save_compiled"]
