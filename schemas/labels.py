"""Labels: names such as `stable` and `canary` pointing at a model's versions."""

from marshmallow import Schema, fields, validate

LABEL_NAME = {"type": "string", "pattern": "^[a-z][a-z0-9_-]{0,63}$", "example": "stable"}


class LabelSetSchema(Schema):
    version = fields.Integer(strict=True, required=True, validate=validate.Range(min=1),
                             metadata={"description": "The version the label points at; it "
                                                      "must exist.", "example": 2})


class LabelSchema(Schema):
    label = fields.String(metadata={"example": "stable"})
    version = fields.Integer(metadata={"description": "The version the label points at."})
    model_id = fields.String()
    updated_at = fields.DateTime(metadata={"description": "When the label last moved."})


class LabelListSchema(Schema):
    model_id = fields.String()
    items = fields.List(fields.Nested(LabelSchema), metadata={"description": "By name."})
