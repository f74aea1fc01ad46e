"""Datasets: upload named arrays (JSON, .npy files, one .npz), list, read, delete."""

from __future__ import annotations

from flask import request, url_for
from flask.views import MethodView

from schemas.common import ProblemSchema
from schemas.datasets import (
    UPLOAD_REQUEST_BODY,
    DatasetListQuerySchema,
    DatasetPageSchema,
    DatasetSchema,
)
from service.api.context import page, services, tenant_id
from service.api.parsing import JSON_TYPES, Blueprint, load_json_object
from service.api.uploads import MULTIPART, MultipartUpload
from service.datasets.npy import DATASET_CAP
from service.errors import MalformedRequest, UnsupportedMediaType

blp = Blueprint("datasets", __name__, url_prefix="/datasets",
                description="Upload named arrays (x, y, ...) once; fit them by id.")

FORMS_HINT = ("With curl: --json '{\"x\": [[0, 1]], \"y\": [1]}', or -F x=@x.npy -F y=@y.npy, "
              "or -F file=@data.npz.")


@blp.route("")
class Datasets(MethodView):
    @blp.doc(requestBody=UPLOAD_REQUEST_BODY)
    @blp.response(201, DatasetSchema)
    @blp.alt_response(400, schema=ProblemSchema,
                      description="No body, malformed JSON or multipart, nested too deep.")
    @blp.alt_response(413, schema=ProblemSchema, description="Past a size cap (named).")
    @blp.alt_response(415, schema=ProblemSchema, description="Neither JSON nor multipart.")
    @blp.alt_response(422, schema=ProblemSchema, description="An array is invalid.")
    def post(self):
        """Upload a dataset: arrays as JSON, one .npy file per array, or one .npz"""
        datasets = services().datasets
        if request.mimetype == MULTIPART:
            upload = MultipartUpload(request, datasets.limits.max_dataset_bytes, DATASET_CAP)
            dataset = datasets.create_from_files(tenant_id(), upload)
        else:
            dataset = datasets.create_from_json(tenant_id(), _json_body())
        return dataset, 201, {"Location": url_for("datasets.DatasetById", dataset_id=dataset.id)}

    @blp.arguments(DatasetListQuerySchema, location="query")
    @blp.response(200, DatasetPageSchema)
    def get(self, query):
        """List datasets, oldest first"""
        items, total = services().datasets.list(tenant_id(), **query)
        return page(items, total, query)


@blp.route("/<dataset_id>")
class DatasetById(MethodView):
    @blp.response(200, DatasetSchema)
    @blp.alt_response(404, schema=ProblemSchema, description="No such dataset.")
    def get(self, dataset_id):
        """Read a dataset: its arrays' shapes and dtypes, rows, size and checksum"""
        return services().datasets.get(tenant_id(), dataset_id)

    @blp.response(204)
    @blp.alt_response(404, schema=ProblemSchema, description="No such dataset.")
    @blp.alt_response(409, schema=ProblemSchema, description="A job still uses it.")
    def delete(self, dataset_id):
        """Delete a dataset and its files"""
        services().datasets.delete(tenant_id(), dataset_id)


def _json_body() -> dict:
    mimetype = request.mimetype or ""
    if mimetype in JSON_TYPES or mimetype.endswith("+json"):
        return load_json_object(request)
    if not mimetype and not request.content_length:
        raise MalformedRequest(f"The request has no body; expected arrays. {FORMS_HINT}")
    raise UnsupportedMediaType(f"Expected Content-Type application/json or {MULTIPART}; "
                               f"received '{request.content_type}'. {FORMS_HINT}")
