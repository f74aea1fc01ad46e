"""Marshmallow schemas of the public API: request and response shapes, nothing else.

No module here imports application state; `openapi.yaml` is generated from these.
"""
