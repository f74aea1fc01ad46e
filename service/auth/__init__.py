"""API keys, scopes and tenants: who is calling, and what they may do.

A key is `ks_<id>_<secret>`; the registry keeps the id, the tenant, the scope and the
secret's SHA-256, never the secret. Each web worker keeps the active keys in memory
(`KeyRing`), refreshed when the registry stamp moves, so checking a request costs a dict
lookup and one hash, not a query.
"""
