"""One Config class, read from environment variables.

Every setting is an environment variable named in `SETTINGS` below; the README's
configuration table lists the same names, defaults and meanings (a test keeps the two in
step). Command-line options of `keras-service serve` set these variables, so that gunicorn's
workers, which build their app with `create_app()`, see the same values.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

PREFIX = "KERAS_SERVICE_"


@dataclass(frozen=True)
class Setting:
    name: str
    default: object
    help: str

    @property
    def env(self) -> str:
        return PREFIX + self.name.upper()


SETTINGS = [
    Setting("host", "127.0.0.1", "Address to listen on."),
    Setting("port", 8000, "Port to listen on."),
    Setting("insecure", False,
            "Whether a service with no API keys may listen beyond loopback; every caller is "
            "then the default tenant with the admin scope. Off: it refuses to start."),
    Setting("data_dir", "./data", "Folder for the SQLite registry and the `.keras` files."),
    Setting("database_url", "",
            "SQLAlchemy URL of the registry; empty means `sqlite:///DATA_DIR/registry.sqlite3`. "
            "PostgreSQL: `postgresql+psycopg://user:pass@host/db` (install the `postgres` extra)."),
    Setting("workers", 2, "Gunicorn web worker processes."),
    Setting("threads", 4, "Threads per web worker."),
    Setting("worker_timeout", 120, "Seconds before gunicorn restarts a silent web worker."),
    Setting("max_body_bytes", 16 * 1024 * 1024, "Largest request body accepted (413 beyond)."),
    Setting("max_json_depth", 32, "Deepest JSON nesting accepted in a request body (400 beyond)."),
    Setting("max_layers", 200, "Most layers one model may have (422 beyond)."),
    Setting("max_params", 50_000_000, "Most parameters one model may have (422 beyond)."),
    Setting("builder_recycle_after", 200,
            "Specs a builder process checks before it is replaced by a fresh one; bounds the "
            "memory TensorFlow keeps for every model built in a process."),
    Setting("builder_timeout", 120, "Seconds one build or compile may take (503 beyond)."),
    Setting("page_size_max", 500, "Largest page a list route returns."),
    Setting("max_dataset_bytes", 2 * 1024**3,
            "Largest dataset upload (multipart `.npy`/`.npz`), in bytes (413 beyond)."),
    Setting("max_data_dir_bytes", 50 * 1024**3,
            "Most bytes of datasets and models the data directory may hold (413 beyond)."),
    Setting("max_import_bytes", 1024**3,
            "Largest `.keras` file `POST /models/import` takes, in bytes (413 beyond); also "
            "caps what its members unpack to."),
    Setting("import_memory_bytes", 4 * 1024**3,
            "Memory (RLIMIT_DATA) of the throw-away process that checks and loads one "
            "imported `.keras` file, in bytes (422 beyond)."),
    Setting("import_timeout", 120,
            "Seconds one import's throw-away process may take before it is killed (422)."),
    Setting("max_inline_elements", 1_000_000,
            "Most numbers in a JSON array given inline (datasets, evaluate, predict)."),
    Setting("max_epochs", 1000, "Most epochs one fit may ask for."),
    Setting("max_batch_size", 65536, "Largest batch size one fit may ask for."),
    Setting("max_concurrent_jobs", 1, "Fits that run at once; the rest wait `queued`."),
    Setting("max_queued_jobs", 64, "Most jobs queued or running at once, all models."),
    Setting("max_queued_jobs_per_model", 4, "Most jobs queued or running for one model."),
    Setting("embedded_trainer", True,
            "Whether `serve` starts the local trainer; false when trainers run elsewhere."),
    Setting("log_level", "info", "Log level of the service and gunicorn."),
    Setting("serving_refresh_ms", 1000,
            "Most milliseconds a web worker serves with cached model and version rows before "
            "it reads the registry again; changes made on this host are seen at once (the "
            "registry stamp file), this bounds the delay for writers on other hosts."),
    Setting("lite_runtime", True,
            "Whether a web worker moves a hot version's small batches (up to 64 rows) onto "
            "LiteRT, which answers a one-row call without TensorFlow's ~0.3 ms per-call "
            "cost; a version LiteRT cannot hold, answers otherwise or is slower for, stays on "
            "TensorFlow."),
    Setting("lite_after_calls", 100,
            "Small batches a loaded version answers in a web worker before that worker "
            "converts it to LiteRT, in the background; 0 converts it as it loads."),
    Setting("access_log", True,
            "Whether each request is logged as one JSON line on stderr (see Metrics and logs)."),
]


def _convert(raw: str, default: object, env: str) -> object:
    if isinstance(default, bool):
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise SystemExit(f"{env} must be an integer; received {raw!r}.") from None
    return raw


@dataclass(frozen=True)
class Config:
    host: str
    port: int
    insecure: bool
    data_dir: Path
    database_url: str
    workers: int
    threads: int
    worker_timeout: int
    max_body_bytes: int
    max_json_depth: int
    max_layers: int
    max_params: int
    builder_recycle_after: int
    builder_timeout: int
    page_size_max: int
    max_dataset_bytes: int
    max_data_dir_bytes: int
    max_import_bytes: int
    import_memory_bytes: int
    import_timeout: int
    max_inline_elements: int
    max_epochs: int
    max_batch_size: int
    max_concurrent_jobs: int
    max_queued_jobs: int
    max_queued_jobs_per_model: int
    embedded_trainer: bool
    log_level: str
    serving_refresh_ms: int
    lite_runtime: bool
    lite_after_calls: int
    access_log: bool

    @classmethod
    def from_env(cls, environ=None, **overrides) -> Config:
        """Read every setting from `environ` (default os.environ); `overrides` win."""
        environ = os.environ if environ is None else environ
        values = {}
        for setting in SETTINGS:
            raw = environ.get(setting.env)
            values[setting.name] = (setting.default if raw in (None, "")
                                    else _convert(raw, setting.default, setting.env))
        values.update(overrides)
        values["data_dir"] = Path(values["data_dir"]).resolve()
        if not values["database_url"]:
            values["database_url"] = f"sqlite:///{values['data_dir'] / 'registry.sqlite3'}"
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """The environment variables that reproduce this config in another process."""
        return {PREFIX + field.name.upper(): str(getattr(self, field.name))
                for field in fields(self)}
