"""The API key format, its hash, and the scope ladder."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from service.storage import new_id

PREFIX = "ks_"
# Each scope may do everything the ones before it may.
SCOPES = ("predict", "train", "admin")
_TOKEN = re.compile(r"ks_([0-9a-f]{32})_([A-Za-z0-9_-]{20,128})")
TENANT_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
# Compared against when the key id is unknown, so that the answer takes as long either way.
_NO_SECRET = hashlib.sha256(b"no such key").hexdigest()


def new_token() -> tuple[str, str, str]:
    """A fresh key: (key id, the token to hand out once, the secret's hash to store)."""
    key_id, secret = new_id(), secrets.token_urlsafe(32)
    return key_id, f"{PREFIX}{key_id}_{secret}", hash_secret(secret)


def hash_secret(secret: str) -> str:
    # The secret is 256 random bits: a plain hash cannot be brute-forced, so no slow KDF.
    return hashlib.sha256(secret.encode()).hexdigest()


def split_token(token: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed token, else None."""
    match = _TOKEN.fullmatch(token)
    return (match.group(1), match.group(2)) if match else None


def secret_matches(secret: str, stored_hash: str | None) -> bool:
    """Whether `secret` hashes to `stored_hash`, in time independent of where they differ."""
    return hmac.compare_digest(hash_secret(secret), stored_hash or _NO_SECRET) \
        and stored_hash is not None


def scope_covers(held: str, needed: str) -> bool:
    return SCOPES.index(held) >= SCOPES.index(needed)
