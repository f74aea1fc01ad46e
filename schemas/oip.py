"""Open Inference Protocol (KServe v2): request and response bodies of the /v2 routes.

Field names are the protocol's own. Tensor `data` is a JSON array (flat, or nested as the
shape); `service.oip` decodes it against its `shape` and `datatype`, and the model checks
the result. Class names start with `Oip` so that the OpenAPI components stay apart from
the other protocols'.
"""

from marshmallow import EXCLUDE, Schema, fields, validate

DATATYPES = ("BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
             "FP16", "FP32", "FP64")
BINARY = {"type": "string", "format": "binary"}


def _parameters(description: str) -> fields.Dict:
    return fields.Dict(keys=fields.String(), metadata={"description": description})


class OipErrorSchema(Schema):
    error = fields.String(metadata={"description": "What was wrong, what was expected, and "
                                                   "what was received."})


class OipServerMetadataSchema(Schema):
    name = fields.String(metadata={"example": "keras-model-service"})
    version = fields.String(metadata={"example": "0.1.0"})
    extensions = fields.List(fields.String(), metadata={"example": ["binary_tensor_data"]})


class OipLiveSchema(Schema):
    live = fields.Boolean()


class OipReadySchema(Schema):
    ready = fields.Boolean()
    error = fields.String(metadata={"description": "Why not, when not ready."})


class OipModelReadySchema(OipReadySchema):
    name = fields.String()


class OipMetadataTensorSchema(Schema):
    name = fields.String()
    datatype = fields.String(metadata={"example": "FP32"})
    shape = fields.List(fields.Integer(), metadata={
        "description": "-1 for a dimension of any size (the batch).", "example": [-1, 100]})


class OipModelMetadataSchema(Schema):
    name = fields.String()
    versions = fields.List(fields.String(), metadata={"example": ["1", "2"]})
    platform = fields.String(metadata={"example": "keras"})
    inputs = fields.List(fields.Nested(OipMetadataTensorSchema))
    outputs = fields.List(fields.Nested(OipMetadataTensorSchema))


class OipRequestInputSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    name = fields.String(required=True)
    shape = fields.List(fields.Integer(strict=True, validate=validate.Range(min=0)),
                        required=True, metadata={"example": [1, 100]})
    datatype = fields.String(required=True, metadata={
        "description": "One of " + ", ".join(DATATYPES) + "; BYTES is refused (numeric "
                       "models only).", "example": "FP32"})
    parameters = _parameters("`binary_data_size`: the tensor's bytes follow the JSON header "
                             "(binary tensor data extension).")
    data = fields.Raw(metadata={"description": "Row-major: flat, or nested as the shape. "
                                               "Absent when the tensor is binary."})


class OipRequestOutputSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    name = fields.String(required=True)
    parameters = _parameters("`binary_data: true` answers this output as raw bytes.")


class OipInferRequestSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    id = fields.String(metadata={"description": "Echoed in the answer."})
    parameters = _parameters("`binary_data_output: true` answers every output as raw bytes "
                             "unless an output says otherwise.")
    inputs = fields.List(fields.Nested(OipRequestInputSchema), required=True,
                         validate=validate.Length(min=1))
    outputs = fields.List(fields.Nested(OipRequestOutputSchema), metadata={
        "description": "The outputs to answer, in this order; default all, in the model's "
                       "order."})


class OipResponseOutputSchema(Schema):
    name = fields.String()
    shape = fields.List(fields.Integer())
    datatype = fields.String()
    parameters = _parameters("`binary_data_size` when the data follows the JSON header.")
    data = fields.Raw(metadata={"description": "Flat, row-major. Absent when binary."})


class OipInferResponseSchema(Schema):
    model_name = fields.String()
    model_version = fields.String()
    id = fields.String()
    outputs = fields.List(fields.Nested(OipResponseOutputSchema))


BINARY_NOTE = ("Binary tensor data extension: the JSON header (its length in the "
               "`Inference-Header-Content-Length` header), then the raw little-endian tensors "
               "in the order of the JSON.")
INFER_REQUEST_BODY = {
    "required": True,
    "content": {"application/json": {"schema": OipInferRequestSchema},
                "application/octet-stream": {"schema": {**BINARY, "description": BINARY_NOTE}}},
}
INFER_RESPONSE = {
    "description": "JSON; or, when an output is asked as binary, application/octet-stream "
                   "with the JSON's length in Inference-Header-Content-Length.",
    "content": {"application/json": {"schema": OipInferResponseSchema},
                "application/octet-stream": {"schema": {**BINARY, "description": BINARY_NOTE}}},
}
