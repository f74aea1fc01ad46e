"""Queries on model versions: immutable, one per successful fit."""

from __future__ import annotations

from sqlalchemy import select

from service.errors import NotFound
from service.registry.database import Database
from service.registry.tables import Version

MAX_VERSION = 2**31 - 1  # the column's range; no larger number can exist


class VersionRegistry:
    def __init__(self, database: Database):
        self.db = database

    def list(self, tenant_id: str, model_id: str) -> list[Version]:
        with self.db.session() as session:
            return list(session.scalars(
                select(Version)
                .where(Version.tenant_id == tenant_id, Version.model_id == model_id)
                .order_by(Version.number)))

    def get(self, tenant_id: str, model_id: str, number: int) -> Version:
        version = None
        # A number past the column's range is none of its versions, not an error of the
        # database driver (SQLite raises OverflowError beyond 64 bits).
        if 1 <= number <= MAX_VERSION:
            with self.db.session() as session:
                version = session.scalar(select(Version).where(
                    Version.tenant_id == tenant_id, Version.model_id == model_id,
                    Version.number == number))
        if version is None:
            raise NotFound(f"Model '{model_id}' has no version {number}; "
                           f"GET /models/{model_id}/versions lists them.")
        return version
