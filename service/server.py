"""gunicorn over create_app(), with the start-up housekeeping done once in the master.

The master process never imports TensorFlow (it forks the workers, and TensorFlow is not
fork-safe); `load()` runs in each worker because preload is off.
"""

from __future__ import annotations

import logging

from gunicorn.app.base import BaseApplication

from service.config import Config

log = logging.getLogger("keras_service")


class ServiceApplication(BaseApplication):
    def __init__(self, options: dict):
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        from service import create_app

        return create_app()


def prepare_data_dir(config: Config) -> None:
    """Migrate the registry and clear what a crash left behind, before any worker starts."""
    from service.registry import Database, ModelRegistry
    from service.storage import ArtifactStore

    store = ArtifactStore(config.data_dir)
    store.ensure_layout()
    database = Database(config.database_url)
    database.migrate(config.data_dir)
    temporary = store.sweep_temporary_files()
    orphans = store.sweep_orphans(store.models_dir, ModelRegistry(database).all_ids())
    if temporary or orphans:
        log.warning("start-up sweep removed %d temporary file(s) and %d orphaned model "
                    "folder(s)", temporary, orphans)
    database.engine.dispose()


def run_gunicorn(config: Config) -> None:
    logging.basicConfig(level=config.log_level.upper())
    prepare_data_dir(config)
    ServiceApplication({
        "bind": f"{config.host}:{config.port}",
        "workers": config.workers,
        "worker_class": "gthread",
        "threads": config.threads,
        "timeout": config.worker_timeout,
        "graceful_timeout": 30,
        "preload_app": False,
        "loglevel": config.log_level,
        "proc_name": "keras-service",
    }).run()
