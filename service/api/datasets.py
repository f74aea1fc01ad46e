"""Datasets: upload named arrays (JSON, .npy files, one .npz), list, read, delete."""

from __future__ import annotations

from pathlib import Path

from flask import request, url_for
from flask.views import MethodView
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser

from schemas.common import ProblemSchema
from schemas.datasets import (
    UPLOAD_REQUEST_BODY,
    DatasetListQuerySchema,
    DatasetPageSchema,
    DatasetSchema,
)
from service.api.context import page, services, tenant_id
from service.api.parsing import JSON_TYPES, Blueprint, load_json_object
from service.datasets import ReceivedUpload
from service.datasets.npy import DATASET_CAP
from service.errors import MalformedRequest, PayloadTooLarge, UnsupportedMediaType

blp = Blueprint("datasets", __name__, url_prefix="/datasets",
                description="Upload named arrays (x, y, ...) once; fit them by id.")

MULTIPART = "multipart/form-data"
# Werkzeug applies this to its parse buffer too (one 64 KiB read plus what it has not yet
# searched for a boundary), so it must stay well above the read size.
MAX_TEXT_FIELD_BYTES = 1024 * 1024
MAX_FORM_PARTS = 64
FORMS_HINT = ("With curl: --json '{\"x\": [[0, 1]], \"y\": [1]}', or -F x=@x.npy -F y=@y.npy, "
              "or -F file=@data.npz.")


@blp.route("")
class Datasets(MethodView):
    @blp.doc(requestBody=UPLOAD_REQUEST_BODY)
    @blp.response(201, DatasetSchema)
    @blp.alt_response(413, schema=ProblemSchema, description="Past a size cap (named).")
    @blp.alt_response(415, schema=ProblemSchema, description="Neither JSON nor multipart.")
    @blp.alt_response(422, schema=ProblemSchema, description="An array is invalid.")
    def post(self):
        """Upload a dataset: arrays as JSON, one .npy file per array, or one .npz"""
        datasets = services().datasets
        if request.mimetype == MULTIPART:
            upload = MultipartUpload(request, datasets.limits.max_dataset_bytes)
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


class MultipartUpload:
    """A multipart body, streamed into the dataset's folder when the service asks for it.

    The app-wide body cap (KERAS_SERVICE_MAX_BODY_BYTES) is for JSON; an upload is capped by
    KERAS_SERVICE_MAX_DATASET_BYTES instead, enforced while reading, so an endless body stops
    at the cap. Files go straight to disk through werkzeug's parser, chunk by chunk.
    """

    def __init__(self, flask_request, max_bytes: int):
        self.request = flask_request
        self.max_bytes = max_bytes
        self.content_length = flask_request.content_length

    def receive(self, new_part) -> ReceivedUpload:
        if self.content_length is not None and self.content_length > self.max_bytes:
            raise self._too_large()
        self.request.max_content_length = self.max_bytes
        parser = FormDataParser(stream_factory=new_part, max_form_memory_size=MAX_TEXT_FIELD_BYTES,
                                max_form_parts=MAX_FORM_PARTS, silent=False)
        stream = _CountingReader(self.request.stream)
        try:
            _, form, files = parser.parse(stream, self.request.mimetype, self.content_length,
                                          self.request.mimetype_params)
        except RequestEntityTooLarge:
            if stream.count >= self.max_bytes:
                raise self._too_large() from None
            raise PayloadTooLarge(f"A text field of the form is larger than "
                                  f"{MAX_TEXT_FIELD_BYTES:,} bytes, or the form has more than "
                                  f"{MAX_FORM_PARTS} parts; send arrays as files.") from None
        except ValueError as error:
            raise MalformedRequest(f"The multipart body cannot be parsed: {error}.") from None
        return ReceivedUpload(
            fields={key: form.getlist(key) for key in form},
            files=[(key, Path(upload.stream.name)) for key, upload in files.items(multi=True)])

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"The upload is larger than the cap of {self.max_bytes:,} bytes "
                               f"({DATASET_CAP}).")


class _CountingReader:
    """The request stream, counting what was read (to tell which cap a 413 hit)."""

    def __init__(self, stream):
        self.stream = stream
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.count += len(data)
        return data
