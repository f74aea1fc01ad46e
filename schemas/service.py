"""Catalogue and health."""

from marshmallow import Schema, fields


class CatalogSchema(Schema):
    layers = fields.Dict(metadata={"description": "Layer type -> category, arguments "
                                                  "(type, range, default)."})
    losses = fields.Raw()
    optimizers = fields.Raw()
    metrics = fields.Raw()
    activations = fields.Raw()
    initializers = fields.Raw()
    regularizers = fields.Raw()
    constraints = fields.Raw()


class HealthSchema(Schema):
    status = fields.String(metadata={"example": "ok"})


class ReadySchema(Schema):
    status = fields.String(metadata={"description": "ready or unavailable"})
    checks = fields.Dict(keys=fields.String(), values=fields.Boolean())
