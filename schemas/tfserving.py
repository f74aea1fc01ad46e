"""TensorFlow Serving's REST protocol (/v1): the JSON of its protos, field for field.

int64 fields (versions, dimension sizes) are strings, as proto3's JSON mapping writes them.
Tensors are plain JSON here; `service.inference` checks them against the model.
"""

from marshmallow import INCLUDE, Schema, fields


class TFErrorSchema(Schema):
    """Every /v1 error: `{"error": "<message>"}`, with TF Serving's status codes."""

    error = fields.String(metadata={"example": "Servable not found for request: Latest(mlp)"})


class TFStatusSchema(Schema):
    error_code = fields.String(metadata={"example": "OK"})
    error_message = fields.String(metadata={"example": ""})


class TFModelVersionStatusSchema(Schema):
    version = fields.String(metadata={"example": "1"})
    state = fields.String(metadata={
        "description": "START, LOADING, AVAILABLE, UNLOADING or END; recorded versions "
                       "are AVAILABLE.", "example": "AVAILABLE"})
    status = fields.Nested(TFStatusSchema)


class TFModelStatusSchema(Schema):
    """GetModelStatusResponse."""

    model_version_status = fields.List(fields.Nested(TFModelVersionStatusSchema), metadata={
        "description": "Newest first; only the addressed version for /versions/ and /labels/."})


class TFDimSchema(Schema):
    size = fields.String(metadata={"description": "\"-1\" for the batch dimension.",
                                   "example": "100"})
    name = fields.String(metadata={"example": ""})


class TFTensorShapeSchema(Schema):
    dim = fields.List(fields.Nested(TFDimSchema))
    unknown_rank = fields.Boolean()


class TFTensorInfoSchema(Schema):
    dtype = fields.String(metadata={"example": "DT_FLOAT"})
    tensor_shape = fields.Nested(TFTensorShapeSchema)
    name = fields.String(metadata={"example": "serving_default_input_layer:0"})


class TFSignatureDefSchema(Schema):
    inputs = fields.Dict(keys=fields.String(), values=fields.Nested(TFTensorInfoSchema))
    outputs = fields.Dict(keys=fields.String(), values=fields.Nested(TFTensorInfoSchema))
    method_name = fields.String(metadata={"example": "tensorflow/serving/predict"})
    defaults = fields.Dict()


class TFSignatureDefMapSchema(Schema):
    signature_def = fields.Dict(keys=fields.String(), values=fields.Nested(TFSignatureDefSchema),
                                metadata={"description": "One signature: serving_default."})


class TFMetadataSchema(Schema):
    signature_def = fields.Nested(TFSignatureDefMapSchema)


class TFModelSpecSchema(Schema):
    name = fields.String()
    signature_name = fields.String(metadata={"example": ""})
    version = fields.String(metadata={"example": "1"})


class TFModelMetadataSchema(Schema):
    """GetModelMetadataResponse, with the signature_def metadata field."""

    model_spec = fields.Nested(TFModelSpecSchema)
    metadata = fields.Nested(TFMetadataSchema)


class TFPredictRequestSchema(Schema):
    """One of `instances` (row format) or `inputs` (columnar format); other keys are
    ignored, as TF Serving ignores them."""

    class Meta:
        unknown = INCLUDE

    signature_name = fields.String(metadata={
        "description": "\"serving_default\" (the default) is the only one."})
    instances = fields.Raw(metadata={
        "description": "Rows: one item per instance; for several inputs, one object "
                       "{input_name: value} per instance.",
        "example": [[0.0, 0.5, 1.0]]})
    inputs = fields.Raw(metadata={
        "description": "Columns: the batch as one array, or {input_name: array} for several "
                       "inputs."})


class TFPredictResponseSchema(Schema):
    predictions = fields.Raw(metadata={
        "description": "For `instances`: one item per instance; for several outputs, one "
                       "object {output_name: value} per instance."})
    outputs = fields.Raw(metadata={
        "description": "For `inputs`: the batch as one array, or {output_name: array} for "
                       "several outputs."})
