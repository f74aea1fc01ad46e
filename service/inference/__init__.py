"""Serving trained versions in the web worker: check inputs, load once, predict, evaluate.

- `inputs`: the request to checked numpy arrays, before Keras sees anything.
- `runtime`: the Keras side: the cache of loaded versions, the forward pass, evaluate.
- `service`: `InferenceService`, what the predict, evaluate and version routes call.

Importing this package does not import Keras or TensorFlow.
"""

from service.inference.runtime import LoadedModel, ModelCache
from service.inference.service import Artifact, InferenceService

__all__ = ["Artifact", "InferenceService", "LoadedModel", "ModelCache"]
