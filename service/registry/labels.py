"""Queries on labels: a name (`stable`, `canary`) per model pointing at one of its versions.

Every query is scoped to a tenant. The caller checks that the model and the version exist;
this module only records where each label points, and touches the registry stamp on each
change so that every worker's serving caches see it.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from service.errors import NotFound
from service.registry.database import Database
from service.registry.tables import Label, Model, utcnow
from service.storage import new_id


class LabelRegistry:
    def __init__(self, database: Database):
        self.db = database

    def list(self, tenant_id: str, model_id: str) -> list[Label]:
        with self.db.session() as session:
            return list(session.scalars(
                select(Label).where(Label.tenant_id == tenant_id, Label.model_id == model_id)
                .order_by(Label.label)))

    def get(self, tenant_id: str, model_id: str, label: str) -> Label:
        with self.db.session() as session:
            row = session.scalar(_one(tenant_id, model_id, label))
        if row is None:
            raise _no_label(model_id, label)
        return row

    def version_by_model_name(self, tenant_id: str, name: str, label: str) -> int | None:
        """The version `label` points at on the model called `name` (/v1 addresses by name)."""
        with self.db.session() as session:
            return session.scalar(
                select(Label.version).join(Model, Model.id == Label.model_id)
                .where(Model.tenant_id == tenant_id, Model.name == name,
                       Label.tenant_id == tenant_id, Label.label == label))

    def set(self, tenant_id: str, model_id: str, label: str, version: int) -> Label:
        """Point `label` at `version`, creating the label or moving it."""
        for _ in range(2):
            try:
                with self.db.transaction() as session:
                    row = session.scalar(_one(tenant_id, model_id, label))
                    if row is None:
                        row = Label(id=new_id(), tenant_id=tenant_id, model_id=model_id,
                                    label=label)
                        session.add(row)
                    row.version, row.updated_at = version, utcnow()
                self.db.touch_stamp()
                return row
            except IntegrityError:
                # Another request created the same label between our read and insert:
                # read again and move it instead.
                continue
        raise RuntimeError(f"label {label!r} of model {model_id} kept changing")  # pragma: no cover

    def delete(self, tenant_id: str, model_id: str, label: str) -> None:
        with self.db.transaction() as session:
            result = session.execute(Label.__table__.delete().where(
                Label.tenant_id == tenant_id, Label.model_id == model_id,
                Label.label == label))
            if result.rowcount != 1:
                raise _no_label(model_id, label)
        self.db.touch_stamp()


def _one(tenant_id: str, model_id: str, label: str):
    return select(Label).where(Label.tenant_id == tenant_id, Label.model_id == model_id,
                               Label.label == label)


def _no_label(model_id: str, label: str) -> NotFound:
    return NotFound(f"Model '{model_id}' has no label '{label}'; GET /models/{model_id}/labels "
                    "lists them.")
