"""Models: create, read, rename/tag, and the computed description of their layers."""

from marshmallow import INCLUDE, Schema, ValidationError, fields, validate, validates_schema

from schemas.common import (
    PageQuerySchema,
    PageSchema,
    TensorSpecSchema,
    name_field,
    strict_float,
)

MODEL_TYPES = ("sequential", "functional")
MODEL_STATES = ("draft", "compiled", "training", "trained")
tags_field = fields.List(fields.String(validate=validate.Length(min=1, max=64)),
                         validate=validate.Length(max=32),
                         metadata={"description": "Free labels for finding models."})


class LayerSpecSchema(Schema):
    """A layer as the Python call, flat: {"type": "Dense", "units": 10, "activation": "relu"}.

    Every other key is a Keras keyword argument, checked against GET /catalog.
    """

    class Meta:
        unknown = INCLUDE

    type = fields.String(required=True, metadata={"example": "Dense"})
    name = fields.String(metadata={"description": "Defaults to Keras' snake_case name."})
    inputs = fields.List(fields.String(), metadata={
        "description": "Functional models only: names of the layers or inputs this one takes."})


class ModelInputSchema(Schema):
    name = fields.String(required=True)
    shape = fields.List(fields.Integer(strict=True, allow_none=True), required=True,
                        metadata={"description": "Shape without the batch dimension."})
    dtype = fields.String(load_default="float32")


class ModelCreateSchema(Schema):
    name = name_field(required=True)
    type = fields.String(load_default="sequential", validate=validate.OneOf(MODEL_TYPES))
    layers = fields.List(fields.Nested(LayerSpecSchema), load_default=list)
    inputs = fields.List(fields.Nested(ModelInputSchema),
                         metadata={"description": "Functional models: the model's inputs."})
    outputs = fields.List(fields.String(),
                          metadata={"description": "Functional models: names of output layers."})
    tags = tags_field

    @validates_schema
    def check_graph_fields(self, data, **kwargs):
        if data.get("type") == "functional":
            missing = {k: ["required for a functional model"]
                       for k in ("inputs", "outputs") if not data.get(k)}
            if missing:
                raise ValidationError(missing)
        else:
            given = {k: ["only functional models take this; sequential models get their "
                         "input shape from the first layer's input_shape or input_dim"]
                     for k in ("inputs", "outputs") if k in data}
            if given:
                raise ValidationError(given)


class BatchingSchema(Schema):
    """Dynamic batching of predictions (see the README's "Serving predictions")."""

    max_batch_size = fields.Integer(strict=True, load_default=32,
                                    validate=validate.Range(min=1, max=1024), metadata={
                                        "description": "Most rows one batch runs."})
    max_latency_ms = strict_float(load_default=5.0, validate=validate.Range(min=0, max=1000),
                                  metadata={"description": "Longest a request waits for "
                                                           "others to join its batch."})
    max_queue = fields.Integer(strict=True, load_default=256,
                               validate=validate.Range(min=1, max=10000), metadata={
                                   "description": "Most requests waiting per worker; more "
                                                  "are answered 503 with Retry-After."})


batching_field = fields.Nested(BatchingSchema, allow_none=True, metadata={
    "description": "Dynamic batching of predictions, or null (off, the default)."})


class ModelPatchSchema(Schema):
    name = name_field()
    tags = tags_field
    batching = batching_field

    @validates_schema
    def check_not_empty(self, data, **kwargs):
        if not data:
            raise ValidationError("expected at least one of: name, tags, batching")


class LayerInfoSchema(Schema):
    index = fields.Integer()
    type = fields.String()
    name = fields.String()
    config = fields.Dict(metadata={"description": "The layer's arguments as given."})
    output_shape = fields.Raw(allow_none=True, metadata={
        "description": "[null, 10]; a list of shapes for layers with several outputs; null "
                       "until the model has an input shape."})
    params = fields.Integer(allow_none=True)


class ModelSchema(Schema):
    id = fields.String(dump_only=True)
    name = fields.String()
    type = fields.String(validate=validate.OneOf(MODEL_TYPES))
    state = fields.String(validate=validate.OneOf(MODEL_STATES))
    layers = fields.List(fields.Nested(LayerInfoSchema))
    inputs = fields.List(fields.Nested(TensorSpecSchema))
    outputs = fields.List(fields.Nested(TensorSpecSchema))
    compile = fields.Dict(allow_none=True, metadata={
        "description": "The compile settings, normalized; null until compiled."})
    params = fields.Integer(allow_none=True)
    version = fields.Integer(allow_none=True, metadata={
        "description": "Latest trained version; null until the first successful fit."})
    tags = fields.List(fields.String())
    batching = batching_field
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class ModelListQuerySchema(PageQuerySchema):
    state = fields.String(validate=validate.OneOf(MODEL_STATES))
    name = fields.String()


class ModelPageSchema(PageSchema):
    items = fields.List(fields.Nested(ModelSchema))


class LayerListSchema(Schema):
    model_id = fields.String()
    layers = fields.List(fields.Nested(LayerInfoSchema))


class SummaryQuerySchema(Schema):
    format = fields.String(load_default="json", validate=validate.OneOf(("json", "text")))


class SummarySchema(Schema):
    model_id = fields.String()
    name = fields.String()
    layers = fields.List(fields.Nested(LayerInfoSchema))
    inputs = fields.List(fields.Nested(TensorSpecSchema))
    outputs = fields.List(fields.Nested(TensorSpecSchema))
    params = fields.Integer(allow_none=True)


class CompileSchema(Schema):
    loss = fields.Raw(required=True, metadata={
        "description": 'A name ("categorical_crossentropy"), {"type": ..., args}, or '
                       "{output_name: loss} for multi-output models."})
    optimizer = fields.Raw(required=True, metadata={
        "description": 'A name ("sgd") or {"type": "adam", "learning_rate": 0.001, ...}.'})
    metrics = fields.Raw(metadata={
        "description": 'A list of names (["accuracy"]) or {output_name: [names]}.'})
    loss_weights = fields.Raw(metadata={
        "description": "A list, or {output_name: weight}, for multi-output models."})


class ModelImportSchema(Schema):
    """multipart/form-data: a `.keras` file and, optionally, the model's name."""

    file = fields.Raw(required=True, metadata={
        "type": "string", "format": "binary",
        "description": "A .keras file as Keras 3 saves it (model.save('model.keras')): only "
                       "allow-listed layers, at most KERAS_SERVICE_MAX_IMPORT_BYTES."})
    name = name_field()


IMPORT_REQUEST_BODY = {"required": True,
                       "content": {"multipart/form-data": {"schema": ModelImportSchema}}}
