"""Queries on API keys: create, list, revoke, and the active ones for a web worker's cache.

Creating a key creates its tenant if it is new. Every change touches the registry stamp, so
that each worker's key cache (service/auth/keyring.py) sees a revocation at once.
"""

from __future__ import annotations

from sqlalchemy import select

from service.auth.tokens import SCOPES, TENANT_PATTERN, new_token
from service.errors import InvalidRequest, NotFound
from service.registry.database import Database
from service.registry.tables import ApiKey, Tenant, utcnow


class KeyRegistry:
    def __init__(self, database: Database):
        self.db = database

    def create(self, tenant_id: str, scope: str, description: str = "") -> tuple[ApiKey, str]:
        """A new key for `tenant_id` with `scope`: its row and the token, shown only now."""
        if not TENANT_PATTERN.fullmatch(tenant_id):
            raise InvalidRequest(f"tenant '{tenant_id}': expected 1-64 characters of a-z, 0-9, "
                                 "'-' and '_', starting with a letter or digit")
        if scope not in SCOPES:
            raise InvalidRequest(f"scope '{scope}': expected one of {', '.join(SCOPES)}")
        key_id, token, secret_hash = new_token()
        with self.db.transaction() as session:
            if session.get(Tenant, tenant_id) is None:
                session.add(Tenant(id=tenant_id))
                session.flush()
            row = ApiKey(id=key_id, tenant_id=tenant_id, scope=scope,
                         secret_sha256=secret_hash, description=description[:200],
                         created_at=utcnow())
            session.add(row)
        self.db.touch_stamp()
        return row, token

    def list(self, include_revoked: bool = False) -> list[ApiKey]:
        query = select(ApiKey).order_by(ApiKey.tenant_id, ApiKey.created_at)
        if not include_revoked:
            query = query.where(ApiKey.revoked_at.is_(None))
        with self.db.session() as session:
            return list(session.scalars(query))

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke the key with `key_id` (a full token is accepted too: its id is used)."""
        if key_id.startswith("ks_"):
            key_id = key_id[3:35]
        with self.db.transaction() as session:
            row = session.get(ApiKey, key_id)
            if row is None:
                raise NotFound(f"No API key with id '{key_id}'.")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
        self.db.touch_stamp()
        return row
