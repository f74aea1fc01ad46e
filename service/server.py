"""`keras-service serve`: a small supervisor over the web server and the local trainer.

    serve (this process: no TensorFlow, no Flask app)
      ├─ web: gunicorn master (no TensorFlow) ─ N web workers ─ a builder process each
      └─ trainer: the local trainer loop ─ one process per running fit (+ one warm spare)

The supervisor prepares the data dir once (migrations, crash sweeps), restarts the trainer if
it dies, and stops everything when the web server stops or on SIGTERM/SIGINT. Running the
two as separate commands (`keras-service web`, `keras-service trainer`) gives the same
service spread over machines.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gunicorn.app.base import BaseApplication

from service.auth.exposure import check_exposure
from service.config import Config

log = logging.getLogger("keras_service")
TRAINER_RESTART_DELAY_S = 1.0
STOP_TIMEOUT_S = 30
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


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


def configure_logging(config: Config) -> None:
    from service.request_log import add_request_ids

    logging.basicConfig(level=config.log_level.upper(),
                        format="%(asctime)s [%(process)d] [%(levelname)s] [%(request_id)s] "
                               "%(name)s: %(message)s")
    add_request_ids(logging.getLogger().handlers)
    # Alembic narrates every plugin and migration step at INFO; its warnings still show.
    logging.getLogger("alembic").setLevel(logging.WARNING)


def prepare_data_dir(config: Config) -> None:
    """Migrate the registry and clear what a crash left behind, before anything starts."""
    from service.registry import Database, ModelRegistry
    from service.registry.datasets import DatasetRegistry
    from service.storage import ArtifactStore

    store = ArtifactStore(config.data_dir)
    store.ensure_layout()
    database = Database(config.database_url)
    database.migrate(config.data_dir)
    temporary = store.sweep_temporary_files()
    artifacts = ModelRegistry(database).artifacts()
    orphans = (store.sweep_orphans(store.models_dir, set(artifacts))
               + store.sweep_orphans(store.datasets_dir, DatasetRegistry(database).all_ids()))
    stray = sum(store.sweep_compiled(model_id, artifact) for model_id, artifact in
                artifacts.items())
    if temporary or orphans or stray:
        log.warning("start-up sweep removed %d temporary file(s), %d orphaned model or "
                    "dataset folder(s) and %d unrecorded compiled file(s)",
                    temporary, orphans, stray)
    database.engine.dispose()


def prepare_metrics_dir() -> str | None:
    """Point PROMETHEUS_MULTIPROC_DIR at an empty folder shared by this server's workers.

    Runs before anything imports prometheus_client, which picks its storage at import.
    Returns the folder when it was made here (a temporary one), for removal at exit.
    """
    given = os.environ.get(METRICS_DIR_ENV)
    if given:  # the operator's folder: values of an earlier run must not add up with ours
        os.makedirs(given, exist_ok=True)
        for stale in Path(given).glob("*.db"):
            stale.unlink()
        return None
    os.environ[METRICS_DIR_ENV] = tempfile.mkdtemp(prefix="keras-service-metrics-")
    return os.environ[METRICS_DIR_ENV]


def run_web(config: Config, exposure_checked: bool = False) -> None:
    """gunicorn over create_app(): preload off, so the master never imports the app."""
    # First of all: prometheus-client picks its storage (in memory, or the shared folder)
    # when it is first imported, and logging's request ids import the metrics.
    made = prepare_metrics_dir()
    try:
        configure_logging(config)
        if not exposure_checked:  # `serve` checks before it starts anything
            check_exposure(config)
        from service.metrics import worker_exited

        _run_gunicorn(config, worker_exited)
    finally:
        if made:
            shutil.rmtree(made, ignore_errors=True)


def _run_gunicorn(config: Config, worker_exited) -> None:
    ServiceApplication({
        "bind": f"{config.host}:{config.port}",
        "workers": config.workers,
        "worker_class": "gthread",
        "threads": config.threads,
        "timeout": config.worker_timeout,
        "graceful_timeout": 30,
        "preload_app": False,
        "loglevel": config.log_level,
        "proc_name": "keras-service-web",
        # gunicorn's control socket lives in $HOME, shared by every instance on the machine.
        "control_socket_disable": True,
        # Access lines are ours (service/request_log.py, JSON with the request id).
        "accesslog": None,
        "child_exit": worker_exited,
    }).run()


class Supervisor:
    def __init__(self, config: Config):
        self.config = config
        self.stopping = False
        self.children: dict[str, subprocess.Popen] = {}

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        self._start("web")
        if self.config.embedded_trainer:
            self._start("trainer")
        code = 0
        while not self.stopping:
            time.sleep(0.5)
            if self.children["web"].poll() is not None:
                code = self.children["web"].returncode
                log.error("the web server exited with code %s; stopping", code)
                break
            trainer = self.children.get("trainer")
            if trainer is not None and trainer.poll() is not None and not self.stopping:
                log.error("the trainer exited with code %s; restarting it", trainer.returncode)
                time.sleep(TRAINER_RESTART_DELAY_S)
                self._start("trainer")
        self._stop_children()
        return code

    def _start(self, command: str) -> None:
        # The web server is told that the supervisor has checked the exposure rule already.
        flags = ["--exposure-checked"] if command == "web" else []
        self.children[command] = subprocess.Popen(
            [sys.executable, "-m", "service", command, *flags],
            env={**os.environ, **self.config.to_env()})

    def _stop(self, *_) -> None:
        self.stopping = True

    def _stop_children(self) -> None:
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for child in self.children.values():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()


def run_service(config: Config) -> int:
    configure_logging(config)
    prepare_data_dir(config)
    check_exposure(config)
    return Supervisor(config).run()
