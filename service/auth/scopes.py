"""The scope each operation needs.

`predict` may read and predict, `train` may also build, upload and fit, `admin` may also
delete, move labels (what production serves) and read the service-wide /metrics. Any
operation not named here needs `predict` when it only reads (GET, HEAD, OPTIONS) and
`train` otherwise, so a new route is never open to a predict-only key by accident.
"""

from __future__ import annotations

# Endpoints that need no key at all: probes of a load balancer or an orchestrator.
PUBLIC = frozenset({"health.Health", "health.Ready", "oip.Live", "oip.Ready"})

_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# POSTs that compute an answer and change nothing.
_PREDICT_POSTS = frozenset({
    "inference.Predict", "inference.Evaluate", "oip.Infer", "oip.InferVersion",
    "tfserving.malformed",
    *(f"tfserving.{method}{suffix}" for method in ("predict", "classify", "regress")
      for suffix in ("", "_version", "_label")),
})

_ADMIN = frozenset({
    ("DELETE", "models.ModelById"), ("DELETE", "datasets.DatasetById"),
    ("PUT", "labels.LabelByName"), ("DELETE", "labels.LabelByName"),
    ("GET", "metrics.Metrics"),
})


def needed_scope(method: str, endpoint: str | None) -> str:
    """The least scope that may call `method` on `endpoint` (None: no route matched)."""
    if (method, endpoint) in _ADMIN:
        return "admin"
    if method in _READ_METHODS or endpoint in _PREDICT_POSTS:
        return "predict"
    return "train"
