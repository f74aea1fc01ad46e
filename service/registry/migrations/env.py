"""Alembic environment: migrations run on the connection that Database.migrate passes in."""

from alembic import context
from sqlalchemy import create_engine

from service.registry.tables import Base

target_metadata = Base.metadata
config = context.config


def run_migrations(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
else:  # the `alembic` command line, for writing new migrations
    with create_engine(config.get_main_option("sqlalchemy.url")).begin() as own_connection:
        run_migrations(own_connection)
