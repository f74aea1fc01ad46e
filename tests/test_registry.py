"""The registry: migrations keep old data, and every row has a tenant."""

import shutil
import sqlite3
from pathlib import Path

import pytest

from service.errors import Conflict, NotFound, PreconditionFailed
from service.registry import Database, ModelRegistry
from service.registry.tables import DEFAULT_TENANT

OLD_DATABASE = Path(__file__).parent / "data" / "registry-0001.sqlite3"
OLD_MODEL_ID = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def database(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'registry.sqlite3'}")
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


def test_sqlite_registry_runs_in_wal_mode(database, tmp_path):
    with database.engine.connect() as connection:
        mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
    assert mode == "wal"


def test_migrate_twice_is_harmless(database, tmp_path):
    database.migrate(tmp_path)
    assert database.current_revision() == Database.head_revision()


def test_every_table_has_an_owning_tenant_column(database):
    with database.engine.connect() as connection:
        tables = [row[0] for row in connection.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type='table' "
            "AND name NOT IN ('alembic_version', 'tenants')")]
        assert tables
        for table in tables:
            columns = [row[1] for row in connection.exec_driver_sql(
                f"PRAGMA table_info({table})")]
            assert "tenant_id" in columns, table


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
