"""Datasets: the upload forms (JSON or multipart files) and the stored description."""

from marshmallow import INCLUDE, Schema, fields

from schemas.common import PageQuerySchema, PageSchema

BINARY = {"type": "string", "format": "binary"}

# JSON Schema written out: the body's keys are the client's array names, so every key
# other than "name" and "dtypes" is an array, which marshmallow cannot say.
JSON_UPLOAD = {
    "type": "object",
    "description": "Arrays given inline: every key other than `name` and `dtypes` is an array "
                   "name (1-64 letters, digits or '_'); all arrays have the same number of rows.",
    "properties": {
        "name": {"type": "string", "description": "Optional label, not unique."},
        "dtypes": {"type": "object", "additionalProperties": {"type": "string"},
                   "description": "Per array: float16/32/64, int8..int64 or uint8..uint64. "
                                  "Default: int64 for integers only, else float32."},
    },
    "additionalProperties": {"type": "array", "items": {},
                             "description": "Nested lists of numbers, one list per row."},
    "example": {"name": "xor", "x": [[0, 0], [0, 1], [1, 0], [1, 1]], "y": [0, 1, 1, 0]},
}


class DatasetFilesSchema(Schema):
    """multipart/form-data: one `.npy` file per array (the field name is the array name), or
    one `.npz` file; and an optional text field `name`."""

    class Meta:
        unknown = INCLUDE

    name = fields.String(metadata={"description": "Optional label, not unique."})
    x = fields.Raw(metadata={**BINARY, "description": "x.npy, written by numpy.save."})
    y = fields.Raw(metadata={**BINARY, "description": "y.npy: every array has as many rows."})
    file = fields.Raw(metadata={**BINARY, "description": "Or one .npz (numpy.savez): each "
                                                          "member x.npy becomes the array x."})


UPLOAD_REQUEST_BODY = {
    "required": True,
    "content": {"application/json": {"schema": JSON_UPLOAD},
                "multipart/form-data": {"schema": DatasetFilesSchema}},
}


class ArraySpecSchema(Schema):
    shape = fields.List(fields.Integer(), metadata={"example": [512, 784]})
    dtype = fields.String(metadata={"example": "float32"})


class DatasetSchema(Schema):
    id = fields.String(dump_only=True)
    name = fields.String(allow_none=True)
    arrays = fields.Dict(keys=fields.String(), values=fields.Nested(ArraySpecSchema), metadata={
        "description": "Shape and dtype of each array, by name."})
    rows = fields.Integer(metadata={"description": "The first dimension, shared by every array."})
    bytes = fields.Integer(metadata={"description": "Size of the stored .npy files."})
    sha256 = fields.String(metadata={
        "description": "SHA-256 of the `sha256sum` listing of the .npy files in name order: "
                       "`LC_ALL=C sha256sum *.npy | sha256sum` in the dataset's folder."})
    created_at = fields.DateTime()


class DatasetListQuerySchema(PageQuerySchema):
    name = fields.String()


class DatasetPageSchema(PageSchema):
    items = fields.List(fields.Nested(DatasetSchema))
