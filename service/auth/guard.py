"""Who is calling, checked before every view: the key, its tenant, its scope.

With no active key, every caller is the default tenant with the admin scope, but only
where the service may be open: on loopback, or when started with `--insecure`. Anywhere
else a service with no keys (all revoked, say) refuses every request rather than open up.
"""

from __future__ import annotations

import ipaddress

from flask import g, request

from service.auth.keyring import Caller, KeyRing
from service.auth.scopes import PUBLIC, needed_scope
from service.auth.tokens import scope_covers
from service.errors import Forbidden, Unauthorized
from service.registry.tables import DEFAULT_TENANT

_OPEN = Caller(DEFAULT_TENANT, "admin")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="keras-service"'}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def install(app, keyring: KeyRing, *, open_without_keys: bool) -> None:
    """Check every request of `app` against `keyring`; views read the caller from `g`."""

    @app.before_request
    def authenticate():
        if request.endpoint in PUBLIC:
            return
        caller = _caller(keyring, open_without_keys)
        needed = needed_scope(request.method, request.endpoint)
        if not scope_covers(caller.scope, needed):
            raise Forbidden(f"This key has the '{caller.scope}' scope; {request.method} "
                            f"{request.path} needs '{needed}'.")
        g.caller = caller


def _caller(keyring: KeyRing, open_without_keys: bool) -> Caller:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not keyring.has_keys():
        if open_without_keys:
            return _OPEN
        raise Unauthorized("No API key is active on this service, and it listens beyond "
                           "loopback: create one with `keras-service keys create`.",
                           headers=_CHALLENGE)
    if not header:
        raise Unauthorized("An API key is required: send 'Authorization: Bearer <key>'.",
                           headers=_CHALLENGE)
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Expected 'Authorization: Bearer <key>'.", headers=_CHALLENGE)
    caller = keyring.caller(token.strip())
    if caller is None:
        raise Unauthorized("This API key is not valid: unknown, revoked or mistyped.",
                           headers={**_CHALLENGE, "WWW-Authenticate":
                                    'Bearer realm="keras-service", error="invalid_token"'})
    return caller
