"""Predict and evaluate: request and response bodies.

Tensors are plain JSON arrays here (marshmallow's `Raw`): their shapes and values are checked
against the model's inputs by `service.inference`, which knows the model.
"""

from marshmallow import (
    INCLUDE,
    Schema,
    ValidationError,
    fields,
    post_dump,
    validate,
    validates_schema,
)

version_field = fields.Integer(strict=True, validate=validate.Range(min=1), metadata={
    "description": "The version to use; default the model's latest.", "example": 1})


class PredictSchema(Schema):
    instances = fields.Raw(metadata={
        "description": "Rows: one instance per item, e.g. [[0.1, 0.2, ...], ...]; for several "
                       "inputs, one object per row: [{input_name: value}, ...].",
        "example": [[0.0, 0.5, 1.0]]})
    inputs = fields.Raw(metadata={
        "description": "Columns: the whole batch as one array, or {input_name: array} (needed "
                       "for models with several inputs)."})
    version = version_field

    @validates_schema
    def check_one_form(self, data, **kwargs):
        given = [key for key in ("instances", "inputs") if key in data]
        if len(given) != 1:
            raise ValidationError("expected exactly one of 'instances' (rows) or 'inputs' "
                                  f"(columns); received {' and '.join(given) or 'neither'}",
                                  field_name="instances")


class PredictionSchema(Schema):
    predictions = fields.Raw(metadata={
        "description": "One row per instance; {output_name: rows} for several outputs."})
    model_version = fields.Integer(metadata={"description": "The version that answered."})


class EvaluateSchema(Schema):
    dataset = fields.String(metadata={"description": "An uploaded dataset's id."})
    x = fields.Raw(metadata={
        "description": "With `dataset`: the array name(s) for the inputs (default \"x\"; "
                       "{input_name: array_name} or a list for several inputs). Without: "
                       "the inputs inline, as for predict's `inputs`."})
    y = fields.Raw(metadata={
        "description": "With `dataset`: the array name(s) for the targets (default \"y\"). "
                       "Without: the targets inline, {output_name: array} for several outputs."})
    batch_size = fields.Integer(strict=True, load_default=32, validate=validate.Range(min=1))
    version = version_field

    @validates_schema
    def check_inline_arrays(self, data, **kwargs):
        if "dataset" not in data:
            missing = {key: ["required without 'dataset' (inline arrays)"]
                       for key in ("x", "y") if key not in data}
            if missing:
                raise ValidationError(missing)


class EvaluationSchema(Schema):
    """`{"loss": ..., "<metric>": ..., "model_version": N}`: Keras' evaluate, as a dict."""

    class Meta:
        unknown = INCLUDE

    loss = fields.Float(metadata={"description": "The compiled loss on the given data."})
    model_version = fields.Integer(metadata={"description": "The version evaluated."})

    @post_dump(pass_original=True)
    def keep_metrics(self, data, original, **kwargs):
        # The metric names depend on the compile settings, so they cannot be declared.
        return {**original, **data}
