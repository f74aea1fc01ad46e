"""The start-up rule: no API keys means loopback only, unless told `--insecure`."""

from __future__ import annotations

import logging

from service.auth.guard import is_loopback
from service.config import Config
from service.registry import Database
from service.registry.keys import KeyRegistry

log = logging.getLogger("keras_service")


def check_exposure(config: Config) -> None:
    """Say at start who may call the service; refuse to start where it would be open to all.

    Raises:
        SystemExit: no active key, a host beyond loopback, and no `--insecure`.
    """
    database = Database(config.database_url, config.data_dir)
    database.migrate(config.data_dir)
    active = len(KeyRegistry(database).list())
    database.engine.dispose()
    where = f"{config.host}:{config.port}"
    if active:
        log.info("%d API key(s) active: every route but /healthz, /readyz and /v2/health/* "
                 "needs 'Authorization: Bearer <key>'", active)
    elif is_loopback(config.host):
        log.warning("no API keys: every caller acts as tenant 'default' with the admin scope; "
                    "listening on loopback only (%s). Create a key with `keras-service keys "
                    "create` to require keys.", where)
    elif config.insecure:
        log.warning("INSECURE: no API keys and listening on %s: anyone who can reach it acts "
                    "as tenant 'default' with the admin scope.", where)
    else:
        raise SystemExit(
            f"Refusing to listen on {where} with no API keys. Create one with `keras-service "
            f"keys create --data-dir {config.data_dir} --tenant NAME --scopes admin`, listen "
            "on 127.0.0.1, or pass --insecure to serve everyone as the default tenant.")
