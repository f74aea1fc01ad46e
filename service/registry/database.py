"""The registry's engine, sessions and schema migrations."""

from __future__ import annotations

import fcntl
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, func, select, text
from sqlalchemy.orm import sessionmaker

from service.errors import not_found
from service.registry.stamp import stamp_for
from service.registry.tables import DEFAULT_TENANT, Tenant
from service.storage import is_valid_id

MIGRATIONS = Path(__file__).parent / "migrations"


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers in every worker run beside the one writer; FULL sync makes a commit
    # survive a power cut, and the busy timeout queues writers instead of failing them.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def alembic_config(url: str) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


class Database:
    """One engine per process; sessions per operation."""

    def __init__(self, url: str, data_dir: Path | None = None):
        self.url = url
        self.stamp = stamp_for(url, data_dir)
        self.is_sqlite = url.startswith("sqlite")
        options = {"connect_args": {"timeout": 10, "check_same_thread": False}} \
            if self.is_sqlite else {"pool_pre_ping": True}
        self.engine = create_engine(url, **options)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.session = sessionmaker(self.engine, expire_on_commit=False)

    def migrate(self, lock_dir: Path, revision: str = "head") -> None:
        """Bring the schema to `revision`, one process at a time, and seed the default tenant."""
        lock_dir.mkdir(parents=True, exist_ok=True)
        with open(lock_dir / ".migrate.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            with self.engine.begin() as connection:
                config = alembic_config(self.url)
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
            if revision == "head":
                self._ensure_default_tenant()

    def current_revision(self) -> str | None:
        with self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    @staticmethod
    def head_revision() -> str:
        return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()

    def _ensure_default_tenant(self) -> None:
        with self.session.begin() as session:
            if session.get(Tenant, DEFAULT_TENANT) is None:
                session.add(Tenant(id=DEFAULT_TENANT))

    def ping(self) -> bool:
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            return True
        except Exception:  # noqa: BLE001 - any failure means "not ready"
            return False

    def touch_stamp(self) -> None:
        """Say that models, versions or labels changed (call after the commit)."""
        self.stamp.touch()

    @contextmanager
    def transaction(self):
        with self.session.begin() as session:
            yield session

    def page(self, query, *order_by, limit: int, offset: int) -> tuple[list, int]:
        """One page of `query`'s rows in `order_by` order, and how many rows it has in all."""
        with self.session() as session:
            total = session.scalar(select(func.count()).select_from(query.subquery()))
            rows = session.scalars(query.order_by(*order_by).limit(limit).offset(offset)).all()
        return list(rows), total

    def owned(self, table, tenant_id: str, row_id: str, kind: str):
        """The row of `table` with id `row_id`, if `tenant_id` owns it.

        Raises:
            NotFound: no such row, or another tenant's (which is not told apart).
        """
        row = None
        if is_valid_id(row_id):
            with self.session() as session:
                row = session.get(table, row_id)
        if row is None or row.tenant_id != tenant_id:
            raise not_found(kind, row_id)
        return row
