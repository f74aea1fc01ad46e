"""The `keras-service` command line: serve, migrate, openapi."""

from __future__ import annotations

import os
import sys

import click

from service.config import SETTINGS, Config

_SETTING = {setting.name: setting for setting in SETTINGS}


def _option(name: str, type_=None):
    """A command-line option that falls back to the setting's environment variable."""
    setting = _SETTING[name]
    return click.option(f"--{name.replace('_', '-')}", name, envvar=setting.env,
                        type=type_ or type(setting.default), default=None,
                        show_envvar=True, help=f"{setting.help} [default: {setting.default}]")


@click.group()
def cli() -> None:
    """Build, train, store and serve Keras models over JSON."""


def _server_options(command):
    """The options every command that runs the web server takes."""
    for name, type_ in reversed([("host", None), ("port", None), ("data_dir", str),
                                 ("workers", None), ("threads", None), ("database_url", str)]):
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
def web(**options) -> None:
    """Run only the web server (gunicorn); trainers run elsewhere."""
    from service.server import run_web

    run_web(_config(options))


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
