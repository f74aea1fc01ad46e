"""Versions: the immutable `.keras` files that successful fits write."""

from marshmallow import Schema, fields


class VersionSchema(Schema):
    number = fields.Integer(metadata={"description": "1 for the first successful fit, then 2, ..."})
    sha256 = fields.String(metadata={"description": "Hex digest of the .keras file; its ETag."})
    bytes = fields.Integer(metadata={"description": "Size of the .keras file."})
    metrics = fields.Dict(metadata={
        "description": "Final metrics of the fit that made it: {loss, val_loss, accuracy, ...}."})
    job_id = fields.String(allow_none=True, metadata={"description": "The fit job that made it."})
    created_at = fields.DateTime()


class VersionListSchema(Schema):
    model_id = fields.String()
    items = fields.List(fields.Nested(VersionSchema), metadata={"description": "Oldest first."})
