"""Fit requests and training jobs."""

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from schemas.common import PageQuerySchema, PageSchema, strict_boolean, strict_float

JOB_STATES = ("queued", "running", "cancelling", "succeeded", "failed", "cancelled")
ARRAY_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"


def _array_names(description: str) -> fields.Raw:
    return fields.Raw(metadata={"description": description, "example": "x"})


class EarlyStoppingSchema(Schema):
    monitor = fields.String(load_default="val_loss", validate=validate.Regexp(
        r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"))
    patience = fields.Integer(strict=True, load_default=0,
                              validate=validate.Range(min=0, max=10_000))
    min_delta = strict_float(load_default=0.0, validate=validate.Range(min=0, max=1e6))
    mode = fields.String(load_default="auto", validate=validate.OneOf(("auto", "min", "max")))
    restore_best_weights = strict_boolean(load_default=False)


class FitSchema(Schema):
    dataset = fields.String(required=True, metadata={"description": "Id of the training dataset."})
    x = _array_names('Array name(s) of the inputs: "x", a list in input order, or '
                     "{input_name: array_name} for several inputs. Default \"x\".")
    y = _array_names('Array name(s) of the targets: "y", a list, or {output_name: array_name}. '
                     'Default "y".')
    epochs = fields.Integer(strict=True, required=True, validate=validate.Range(min=1))
    batch_size = fields.Integer(strict=True, load_default=32, validate=validate.Range(min=1))
    validation_split = strict_float(validate=validate.Range(min=0, max=1, min_inclusive=False,
                                                            max_inclusive=False))
    validation_dataset = fields.String(metadata={
        "description": "Id of a dataset with the same array names, for validation."})
    shuffle = strict_boolean(load_default=True)
    class_weight = fields.Dict(keys=fields.String(validate=validate.Regexp(r"^[0-9]{1,6}$")),
                               values=strict_float(validate=validate.Range(min=0, max=1e6)),
                               metadata={"description": '{"0": 1.0, "1": 5.0}'})
    early_stopping = fields.Nested(EarlyStoppingSchema, allow_none=True)

    @validates_schema
    def check_one_validation_source(self, data, **kwargs):
        if "validation_split" in data and "validation_dataset" in data:
            raise ValidationError("give validation_split or validation_dataset, not both",
                                  "validation_dataset")


class JobSchema(Schema):
    id = fields.String()
    model_id = fields.String()
    dataset_id = fields.String()
    state = fields.String(validate=validate.OneOf(JOB_STATES))
    epoch = fields.Integer(metadata={"description": "Epochs finished."})
    epochs = fields.Integer()
    progress = fields.Float(metadata={"description": "0..1, updated during each epoch."})
    history = fields.Dict(metadata={"description": '{"loss": [...], "val_loss": [...], ...}'})
    error = fields.String(allow_none=True)
    request = fields.Dict(metadata={"description": "The fit request as accepted."})
    created_at = fields.DateTime()
    started_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)
    version = fields.Integer(allow_none=True, metadata={
        "description": "The model version the fit wrote, once succeeded."})


class JobListQuerySchema(PageQuerySchema):
    model = fields.String(metadata={"description": "Only this model's jobs."})
    state = fields.String(validate=validate.OneOf(JOB_STATES))


class JobPageSchema(PageSchema):
    items = fields.List(fields.Nested(JobSchema))
