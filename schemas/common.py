"""Shapes shared by several resources: errors, pages, tensor specs."""

from marshmallow import Schema, fields, validate

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"


def name_field(**kwargs) -> fields.String:
    """A model name: unique per tenant, and safe in /v1 and /v2 URLs."""
    return fields.String(
        validate=validate.Regexp(NAME_PATTERN, error="expected 1-128 letters, digits, '_', "
                                 "'.' or '-', starting with a letter or digit"),
        metadata={"description": "Unique among the tenant's models; used by /v1 and /v2.",
                  "example": "mnist-mlp"}, **kwargs)


def strict_boolean(**kwargs) -> fields.Boolean:
    """A JSON true or false, not "yes", 1 or "on" (marshmallow's lenient default)."""
    return fields.Boolean(truthy={True}, falsy={False}, **kwargs)


class _StrictFloat(fields.Float):
    def _validated(self, value):
        if not isinstance(value, int | float):
            raise self.make_error("invalid", input=value)
        return super()._validated(value)


def strict_float(**kwargs) -> fields.Float:
    """A JSON number, not "0.5" (marshmallow's lenient default takes numeric strings)."""
    return _StrictFloat(**kwargs)


class ProblemSchema(Schema):
    """An RFC 9457 problem document: every error of the native API has this shape."""

    type = fields.String(metadata={"description": "URI naming the kind of problem."})
    title = fields.String(metadata={"description": "Short summary of the kind of problem."})
    status = fields.Integer(metadata={"description": "The HTTP status code."})
    detail = fields.String(metadata={"description": "What was wrong, what was expected, "
                                                    "and what was received."})
    errors = fields.List(fields.Dict(), metadata={
        "description": "For validation errors: [{path, message}], path like layers[2].units."})


class PageQuerySchema(Schema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0, max=2**31))


class PageSchema(Schema):
    total = fields.Integer(metadata={"description": "Items matching, on all pages."})
    limit = fields.Integer()
    offset = fields.Integer()


class TensorSpecSchema(Schema):
    name = fields.String()
    shape = fields.List(fields.Integer(allow_none=True),
                        metadata={"description": "null for the batch dimension."})
    dtype = fields.String()
