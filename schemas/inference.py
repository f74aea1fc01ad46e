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


# Predict reads its body by hand (it is the route that must be fast), so its request and
# its binary forms are documented here rather than through @blp.arguments.
_BINARY = {"type": "string", "format": "binary"}
PREDICT_BODY = {
    "required": True,
    "description": (
        "JSON, or binary: one input as a .npy file (numpy.save) with Content-Type "
        "application/x-npy, several as one .npz (numpy.savez) with a member per input name "
        "and Content-Type application/x-npz. Numeric dtypes only: pickled and object arrays "
        "are refused. curl --data-binary @x.npy -H 'Content-Type: application/x-npy' "
        "-H 'Accept: application/x-npy' -o y.npy"),
    "content": {"application/json": {"schema": PredictSchema},
                "application/x-npy": {"schema": _BINARY},
                "application/x-npz": {"schema": _BINARY}},
}
VERSION_QUERY = {"in": "query", "name": "version", "required": False,
                 "schema": {"type": "integer", "minimum": 1},
                 "description": "The version to use, for binary bodies (JSON bodies may give "
                                "`version` in the body); default the latest."}
# Keyed 200 (an int) like flask-smorest's own, so that this merges with @blp.response's.
PREDICT_ANSWERS = {200: {
    "description": "The predictions; `Accept` chooses JSON (default), application/x-npy (one "
                   "output) or application/x-npz (a member per output name).",
    "content": {"application/x-npy": {"schema": _BINARY},
                "application/x-npz": {"schema": _BINARY}}}}
