"""Queries on models. Every query is scoped to a tenant: another tenant's model is "not found"."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from service.errors import Conflict, NotFound, PreconditionFailed, not_found
from service.registry.database import Database
from service.registry.tables import Label, Model, utcnow
from service.storage import new_id


class ModelRegistry:
    def __init__(self, database: Database):
        self.db = database

    def create(self, tenant_id: str, *, name: str, type: str, state: str, **described) -> Model:
        model = Model(id=new_id(), tenant_id=tenant_id, name=name, type=type, state=state,
                      revision=1, tags=described.pop("tags", []), **described)
        try:
            with self.db.transaction() as session:
                session.add(model)
        except IntegrityError:
            raise _name_taken(name) from None
        self.db.touch_stamp()
        return model

    def get(self, tenant_id: str, model_id: str) -> Model:
        return self.db.owned(Model, tenant_id, model_id, "model")

    def get_by_name(self, tenant_id: str, name: str) -> Model:
        """The tenant's model called `name` (names are unique per tenant)."""
        with self.db.session() as session:
            model = session.scalar(select(Model).where(Model.tenant_id == tenant_id,
                                                       Model.name == name))
        if model is None:
            raise NotFound(f"No model named '{name}'.")
        return model

    def list(self, tenant_id: str, *, limit: int, offset: int,
             state: str | None = None, name: str | None = None) -> tuple[list[Model], int]:
        query = select(Model).where(Model.tenant_id == tenant_id)
        if state:
            query = query.where(Model.state == state)
        if name:
            query = query.where(Model.name == name)
        return self.db.page(query, Model.created_at, Model.id, limit=limit, offset=offset)

    def artifacts(self) -> dict[str, str | None]:
        """{model id: the file its next fit starts from}, every tenant's (start-up sweep)."""
        with self.db.session() as session:
            return dict(session.execute(select(Model.id, Model.artifact)).all())

    def existing_ids(self, model_ids: set[str]) -> set[str]:
        """Which of `model_ids` are still models (any tenant's)."""
        if not model_ids:
            return set()
        with self.db.session() as session:
            return set(session.scalars(select(Model.id).where(Model.id.in_(model_ids))))

    def update(self, model: Model, **changes) -> Model:
        """Apply `changes` if nobody changed the model since `model` was read.

        The compare-and-swap on `revision` is what keeps two concurrent edits from
        silently overwriting each other: the loser gets a 412 and reads again.
        """
        changes.update(revision=model.revision + 1, updated_at=utcnow())
        try:
            with self.db.transaction() as session:
                result = session.execute(
                    update(Model)
                    .where(Model.id == model.id, Model.revision == model.revision)
                    .values(**changes))
                if result.rowcount != 1:
                    raise PreconditionFailed(
                        f"Model '{model.id}' changed while this request was handled "
                        f"(revision {model.revision} is stale); read it again and retry.")
        except IntegrityError:
            raise _name_taken(changes.get("name")) from None
        self.db.touch_stamp()
        for key, value in changes.items():
            setattr(model, key, value)
        return model

    def delete(self, model: Model) -> None:
        with self.db.transaction() as session:
            result = session.execute(
                Model.__table__.delete().where(Model.id == model.id))
            if result.rowcount != 1:
                raise not_found("model", model.id)
            session.execute(Label.__table__.delete().where(Label.model_id == model.id))
        self.db.touch_stamp()


def _name_taken(name) -> Conflict:
    return Conflict(f"A model named '{name}' already exists; model names are unique. "
                    "Choose another name or PATCH the existing model.")
