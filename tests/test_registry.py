"""The registry: migrations keep old data, and every row has a tenant."""

import os
import shutil
import sqlite3
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from service.errors import Conflict, NotFound, PreconditionFailed
from service.registry import Database, ModelRegistry
from service.registry.tables import DEFAULT_TENANT

OLD_DATABASE = Path(__file__).parent / "data" / "registry-0001.sqlite3"
OLD_MODEL_ID = "0123456789abcdef0123456789abcdef"


POSTGRES_URL = os.environ.get("KERAS_SERVICE_TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """A fresh, empty registry database: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.sqlite3'}"
        return
    if not POSTGRES_URL:
        pytest.skip("KERAS_SERVICE_TEST_POSTGRES_URL is not set (.ci/run sets it)")
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"kms_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE {name}")
    yield POSTGRES_URL.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as connection:
        connection.exec_driver_sql(f"DROP DATABASE {name} WITH (FORCE)")
    admin.dispose()


@pytest.fixture
def database(database_url, tmp_path):
    database = Database(database_url)
    database.migrate(tmp_path)
    yield database
    database.engine.dispose()


def test_old_database_file_upgrades_without_losing_data(tmp_path):
    path = tmp_path / "registry.sqlite3"
    shutil.copy(OLD_DATABASE, path)
    database = Database(f"sqlite:///{path}")
    assert database.current_revision() == "0001"

    database.migrate(tmp_path)

    assert database.current_revision() == Database.head_revision() != "0001"
    model = ModelRegistry(database).get(DEFAULT_TENANT, OLD_MODEL_ID)
    assert model.name == "old-model"
    assert model.spec["layers"][0]["units"] == 10
    assert model.tags == []  # the column 0002 added, with its default
    assert model.created_at.tzinfo is not None


def test_upgrade_from_0001_keeps_rows_on_every_backend(database_url, tmp_path):
    database = Database(database_url)
    database.migrate(tmp_path, revision="0001")
    with database.engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO tenants (id, created_at) VALUES ('default', '2026-11-30T10:00:00Z')")
        connection.exec_driver_sql(
            "INSERT INTO models (id, tenant_id, name, type, state, spec, layers, inputs, outputs, "
            "revision, created_at, updated_at) VALUES ('" + OLD_MODEL_ID + "', 'default', 'kept', "
            "'sequential', 'draft', '{\"type\": \"sequential\", \"layers\": []}', '[]', '[]', "
            "'[]', 1, '2026-11-30T10:00:00Z', '2026-11-30T10:00:00Z')")
    database.migrate(tmp_path)
    model = ModelRegistry(database).get(DEFAULT_TENANT, OLD_MODEL_ID)
    assert (model.name, model.tags) == ("kept", [])
    database.engine.dispose()


def test_sqlite_registry_runs_in_wal_mode(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'registry.sqlite3'}")
    database.migrate(tmp_path)
    with database.engine.connect() as connection:
        mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
    assert mode == "wal"


def test_migrate_twice_is_harmless(database, tmp_path):
    database.migrate(tmp_path)
    assert database.current_revision() == Database.head_revision()


def test_every_table_has_an_owning_tenant_column(database):
    inspector = inspect(database.engine)
    tables = set(inspector.get_table_names()) - {"alembic_version", "tenants"}
    assert tables
    for table in tables:
        assert "tenant_id" in {column["name"] for column in inspector.get_columns(table)}, table


def _create(registry, name="a", tenant=DEFAULT_TENANT):
    return registry.create(tenant, name=name, type="sequential", state="draft",
                           spec={"type": "sequential", "layers": []}, layers=[],
                           inputs=[], outputs=[], params=None, summary=None)


def test_names_are_unique_per_tenant(database):
    registry = ModelRegistry(database)
    _create(registry, "same")
    with pytest.raises(Conflict, match="already exists"):
        _create(registry, "same")


def test_another_tenants_model_is_not_found(database):
    registry = ModelRegistry(database)
    with database.transaction() as session:
        from service.registry.tables import Tenant
        session.add(Tenant(id="other"))
    model = _create(registry, "mine", tenant="other")
    with pytest.raises(NotFound):
        registry.get(DEFAULT_TENANT, model.id)
    assert registry.get("other", model.id).name == "mine"


def test_stale_update_is_refused_and_loses_nothing(database):
    registry = ModelRegistry(database)
    model = _create(registry, "x")
    stale = registry.get(DEFAULT_TENANT, model.id)
    registry.update(model, tags=["first"])
    with pytest.raises(PreconditionFailed, match="stale"):
        registry.update(stale, tags=["second"])
    assert registry.get(DEFAULT_TENANT, model.id).tags == ["first"]


@pytest.mark.parametrize("bad_id", ["..", "../etc", "abc", "0" * 31, "Z" * 32, ""])
def test_ids_that_are_not_ours_are_not_found(database, bad_id):
    with pytest.raises(NotFound):
        ModelRegistry(database).get(DEFAULT_TENANT, bad_id)


def test_committed_fixture_is_at_revision_0001():
    connection = sqlite3.connect(f"file:{OLD_DATABASE}?mode=ro", uri=True)
    assert connection.execute("SELECT version_num FROM alembic_version").fetchall() == [("0001",)]
