"""The `keras-service` command line: serve, migrate, openapi."""

from __future__ import annotations

import os
import sys

import click

from service.auth.tokens import SCOPES
from service.config import SETTINGS, Config

_SETTING = {setting.name: setting for setting in SETTINGS}


def _option(name: str, type_=None):
    """A command-line option that falls back to the setting's environment variable."""
    setting = _SETTING[name]
    if isinstance(setting.default, bool):
        return click.option(f"--{name.replace('_', '-')}", name, envvar=setting.env,
                            is_flag=True, default=None, show_envvar=True, help=setting.help)
    return click.option(f"--{name.replace('_', '-')}", name, envvar=setting.env,
                        type=type_ or type(setting.default), default=None,
                        show_envvar=True, help=f"{setting.help} [default: {setting.default}]")


@click.group()
def cli() -> None:
    """Build, train, store and serve Keras models over JSON."""


def _server_options(command):
    """The options every command that runs the web server takes."""
    for name, type_ in reversed([("host", None), ("port", None), ("insecure", None),
                                 ("data_dir", str), ("workers", None), ("threads", None),
                                 ("database_url", str)]):
        command = _option(name, type_)(command)
    return command


@cli.command()
@_server_options
def serve(**options) -> None:
    """Run the service: the web server (gunicorn) and the local trainer."""
    from service.server import run_service

    sys.exit(run_service(_config(options)))


@cli.command()
@_server_options
@click.option("--exposure-checked", is_flag=True, hidden=True)
def web(exposure_checked: bool, **options) -> None:
    """Run only the web server (gunicorn); trainers run elsewhere."""
    from service.server import run_web

    run_web(_config(options), exposure_checked)


@cli.command()
@_option("data_dir", str)
@_option("database_url", str)
def trainer(**options) -> None:
    """Run only a trainer: take queued fits from the registry and run them."""
    from service.jobs.trainer import run_trainer

    run_trainer(_config(options))


def _config(options: dict) -> Config:
    config = Config.from_env(**{k: v for k, v in options.items() if v is not None})
    # Processes started from here (gunicorn's workers, trainers) read the same environment.
    os.environ.update(config.to_env())
    return config


@cli.command()
@_option("data_dir", str)
@_option("database_url", str)
def migrate(**options) -> None:
    """Bring the registry's schema up to date (serve does this too)."""
    from service.registry import Database

    config = _config(options)
    database = Database(config.database_url)
    database.migrate(config.data_dir)
    click.echo(f"registry at revision {database.current_revision()}")


@cli.group()
def keys() -> None:
    """Create, list and revoke API keys; each acts for one tenant with one scope."""


@keys.command("create")
@_option("data_dir", str)
@_option("database_url", str)
@click.option("--tenant", required=True, help="The tenant the key acts for (created if new).")
@click.option("--scopes", "--scope", "scope", required=True, type=click.Choice(SCOPES),
              help="predict: read and predict; train: also build, upload and fit; "
                   "admin: also delete, move labels and read /metrics.")
@click.option("--description", default="", help="A note for `keys list`, e.g. who holds it.")
def create_key(tenant: str, scope: str, description: str, **options) -> None:
    """Create a key; the key itself is printed once, as the last line, and never stored."""
    row, token = _call(lambda: _key_registry(options).create(tenant, scope, description))
    click.echo(f"Created key {row.id} for tenant '{row.tenant_id}' with scope '{row.scope}'.")
    click.echo("Keep the key now: only its hash is stored, it cannot be shown again.")
    click.echo(token)


@keys.command("list")
@_option("data_dir", str)
@_option("database_url", str)
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked keys.")
def list_keys(include_revoked: bool, **options) -> None:
    """List keys: id, tenant, scope, created, revoked, description (never the secret)."""
    rows = _key_registry(options).list(include_revoked)
    click.echo("id\ttenant\tscope\tcreated\trevoked\tdescription")
    for row in rows:
        revoked = row.revoked_at.isoformat(timespec="seconds") if row.revoked_at else "-"
        click.echo(f"{row.id}\t{row.tenant_id}\t{row.scope}\t"
                   f"{row.created_at.isoformat(timespec='seconds')}\t{revoked}\t"
                   f"{row.description}")


@keys.command("revoke")
@_option("data_dir", str)
@_option("database_url", str)
@click.argument("key_id")
def revoke_key(key_id: str, **options) -> None:
    """Revoke a key by its id; running services refuse it from their next request."""
    row = _call(lambda: _key_registry(options).revoke(key_id))
    click.echo(f"Revoked key {row.id} of tenant '{row.tenant_id}'.")


def _key_registry(options: dict):
    from service.registry import Database
    from service.registry.keys import KeyRegistry

    config = _config(options)
    database = Database(config.database_url, config.data_dir)
    database.migrate(config.data_dir)
    return KeyRegistry(database)


def _call(action):
    """Run `action`; a refusal of the registry (bad tenant name, unknown key) is a CLI error."""
    from service.errors import ServiceError

    try:
        return action()
    except ServiceError as error:
        raise click.ClickException(error.detail) from None


@cli.command()
def openapi() -> None:
    """Print the OpenAPI document (the committed openapi.yaml is this output)."""
    import tempfile

    from service import create_app

    with tempfile.TemporaryDirectory() as data_dir:
        app = create_app(Config.from_env(data_dir=data_dir, database_url=""))
        sys.stdout.write(app.extensions["openapi_yaml"])
        app.extensions["keras_service"].builder.close()


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
