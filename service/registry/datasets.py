"""Queries on datasets. Every query is scoped to a tenant: another tenant's dataset is
"not found"."""

from __future__ import annotations

from sqlalchemy import select

from service.errors import not_found
from service.registry.database import Database
from service.registry.tables import Dataset, Job

# Jobs in these states will still read their dataset's files.
ACTIVE_JOB_STATES = ("queued", "running", "cancelling")


class DatasetRegistry:
    def __init__(self, database: Database):
        self.db = database

    def create(self, tenant_id: str, dataset_id: str, *, name: str | None, arrays: dict,
               rows: int, bytes: int, sha256: str) -> Dataset:
        dataset = Dataset(id=dataset_id, tenant_id=tenant_id, name=name, arrays=arrays,
                          rows=rows, bytes=bytes, sha256=sha256)
        with self.db.transaction() as session:
            session.add(dataset)
        return dataset

    def get(self, tenant_id: str, dataset_id: str) -> Dataset:
        return self.db.owned(Dataset, tenant_id, dataset_id, "dataset")

    def list(self, tenant_id: str, *, limit: int, offset: int,
             name: str | None = None) -> tuple[list[Dataset], int]:
        query = select(Dataset).where(Dataset.tenant_id == tenant_id)
        if name:
            query = query.where(Dataset.name == name)
        return self.db.page(query, Dataset.created_at, Dataset.id, limit=limit, offset=offset)

    def active_job_id(self, dataset: Dataset) -> str | None:
        """A job that will still read `dataset`, if any."""
        with self.db.session() as session:
            return session.scalar(
                select(Job.id).where(Job.tenant_id == dataset.tenant_id,
                                     Job.dataset_id == dataset.id,
                                     Job.state.in_(ACTIVE_JOB_STATES)).limit(1))

    def all_ids(self) -> set[str]:
        with self.db.session() as session:
            return set(session.scalars(select(Dataset.id)))

    def delete(self, dataset: Dataset) -> None:
        with self.db.transaction() as session:
            result = session.execute(
                Dataset.__table__.delete().where(Dataset.id == dataset.id))
            if result.rowcount != 1:
                raise not_found("dataset", dataset.id)
