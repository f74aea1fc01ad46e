"""The active API keys, cached per web worker and fresh by the registry stamp."""

from __future__ import annotations

from dataclasses import dataclass

from service.auth.tokens import secret_matches, split_token
from service.registry.keys import KeyRegistry
from service.registry.stamp import StampedRefresh


@dataclass(frozen=True)
class Caller:
    """Who a request acts for: a tenant, with a scope."""

    tenant_id: str
    scope: str
    key_id: str | None = None


@dataclass(frozen=True)
class _Entry:
    tenant_id: str
    scope: str
    secret_sha256: str


class KeyRing:
    """Args:
        keys: the registry's keys, read again whenever the stamp moves.
        refresh_s: the longest a revoked key is honoured when it was revoked on another
            host (this host's writes move the stamp, which is seen at once).
    """

    def __init__(self, keys: KeyRegistry, refresh_s: float):
        self.keys = keys
        self._entries: dict[str, _Entry] = {}
        self._fresh = StampedRefresh(keys.db.stamp, refresh_s, self._reload)

    def has_keys(self) -> bool:
        """Whether any key is active; reads the keys again first if the registry changed."""
        self._fresh.check()
        return bool(self._entries)

    def caller(self, token: str) -> Caller | None:
        """The caller `token` stands for, or None when it is malformed, unknown or revoked,
        among the keys as `has_keys` last read them (the guard asks that first, so that a
        request looks at the stamp once)."""
        parts = split_token(token)
        if parts is None:
            return None
        key_id, secret = parts
        entry = self._entries.get(key_id)
        if not secret_matches(secret, entry.secret_sha256 if entry else None):
            return None
        return Caller(entry.tenant_id, entry.scope, key_id)

    def _reload(self) -> None:
        self._entries = {row.id: _Entry(row.tenant_id, row.scope, row.secret_sha256)
                         for row in self.keys.list()}
