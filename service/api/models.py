"""Models: create, list, read, rename/tag, delete, compile, summarize."""

from flask import Response, request, url_for
from flask.views import MethodView

from schemas.common import ProblemSchema
from schemas.models import (
    IMPORT_REQUEST_BODY,
    CompileSchema,
    ModelCreateSchema,
    ModelListQuerySchema,
    ModelPageSchema,
    ModelPatchSchema,
    ModelSchema,
    SummaryQuerySchema,
    SummarySchema,
)
from service.api.context import if_match, page, services, tenant_id, with_etag
from service.api.parsing import Blueprint
from service.api.uploads import MULTIPART, MultipartUpload
from service.errors import MalformedRequest, UnsupportedMediaType
from service.imports.archive import IMPORT_CAP
from service.imports.service import FORM_HINT

SUMMARY_ANSWER = "The summary as JSON, or Keras' own table as text/plain with ?format=text."
blp = Blueprint("models", __name__, url_prefix="/models",
                description="Build Keras models: Sequential or functional, then compile.")


@blp.route("")
class Models(MethodView):
    @blp.arguments(ModelCreateSchema)
    @blp.response(201, ModelSchema)
    @blp.alt_response(409, schema=ProblemSchema, description="The name is taken.")
    @blp.alt_response(422, schema=ProblemSchema, description="The spec is invalid.")
    def post(self, payload):
        """Create a model, with its layers or its whole functional graph"""
        return with_etag(services().models.create(tenant_id(), payload), 201)

    @blp.arguments(ModelListQuerySchema, location="query")
    @blp.response(200, ModelPageSchema)
    def get(self, query):
        """List models, oldest first"""
        items, total = services().models.list(tenant_id(), **query)
        return page(items, total, query)


@blp.route("/import")
class ModelImport(MethodView):
    @blp.doc(requestBody=IMPORT_REQUEST_BODY)
    @blp.response(201, ModelSchema)
    @blp.alt_response(400, schema=ProblemSchema, description="No file, an empty file, a bad form.")
    @blp.alt_response(409, schema=ProblemSchema, description="The name is taken.")
    @blp.alt_response(413, schema=ProblemSchema, description="Over KERAS_SERVICE_MAX_IMPORT_BYTES.")
    @blp.alt_response(415, schema=ProblemSchema, description="Not multipart, or not a .keras file.")
    @blp.alt_response(422, schema=ProblemSchema,
                      description="Not allow-listed, past a cap, or not what Keras writes.")
    @blp.alt_response(503, schema=ProblemSchema, description="This worker is importing already.")
    def post(self):
        """Import a .keras file as a trained model: checked, rebuilt, weights loaded apart"""
        importer = services().imports
        upload = MultipartUpload(_multipart(), importer.limits.max_bytes, IMPORT_CAP)
        body, status, headers = with_etag(importer.import_file(tenant_id(), upload), 201)
        headers["Location"] = url_for("models.ModelById", model_id=body.id)
        return body, status, headers


def _multipart():
    if request.mimetype == MULTIPART:
        return request
    if not request.mimetype and not request.content_length:
        raise MalformedRequest(f"The request has no body; expected a .keras file. {FORM_HINT}.")
    raise UnsupportedMediaType(f"Expected Content-Type {MULTIPART}; received "
                               f"'{request.content_type}'. {FORM_HINT}.")


@blp.route("/<model_id>")
class ModelById(MethodView):
    @blp.response(200, ModelSchema)
    @blp.alt_response(404, schema=ProblemSchema, description="No such model.")
    def get(self, model_id):
        """Read a model: its state, layers with output shapes and parameters, compile settings"""
        return with_etag(services().models.get(tenant_id(), model_id))

    @blp.arguments(ModelPatchSchema)
    @blp.response(200, ModelSchema)
    @blp.alt_response(404, schema=ProblemSchema, description="No such model.")
    @blp.alt_response(409, schema=ProblemSchema, description="The name is taken.")
    @blp.alt_response(412, schema=ProblemSchema, description="If-Match is stale.")
    def patch(self, changes, model_id):
        """Rename or tag a model, or turn its dynamic batching on or off"""
        return with_etag(services().models.patch(tenant_id(), model_id, changes, if_match()))

    @blp.response(204)
    @blp.alt_response(404, schema=ProblemSchema, description="No such model.")
    def delete(self, model_id):
        """Delete a model and its files"""
        services().models.delete(tenant_id(), model_id, if_match())


@blp.route("/<model_id>/compile")
class ModelCompile(MethodView):
    @blp.arguments(CompileSchema)
    @blp.response(200, ModelSchema)
    @blp.alt_response(404, schema=ProblemSchema, description="No such model.")
    @blp.alt_response(409, schema=ProblemSchema, description="Wrong state.")
    @blp.alt_response(422, schema=ProblemSchema, description="Unknown loss, optimizer, ...")
    def post(self, compile_spec, model_id):
        """Compile a model with a loss and an optimizer; writes its .keras file"""
        return with_etag(
            services().models.compile(tenant_id(), model_id, compile_spec, if_match()))


@blp.route("/<model_id>/summary")
class ModelSummary(MethodView):
    @blp.arguments(SummaryQuerySchema, location="query")
    @blp.response(200, SummarySchema, description=SUMMARY_ANSWER)
    @blp.alt_response(200, schema={"type": "string"}, content_type="text/plain",
                      description=SUMMARY_ANSWER)
    @blp.alt_response(404, schema=ProblemSchema, description="No such model.")
    @blp.alt_response(409, schema=ProblemSchema, description="No input shape yet (text).")
    def get(self, query, model_id):
        """Summarize a model: layers, output shapes, parameter counts"""
        models = services().models
        if query["format"] == "text":
            text = models.summary_text(tenant_id(), model_id)
            return Response(text, mimetype="text/plain")
        model = models.get(tenant_id(), model_id)
        return {"model_id": model.id, "name": model.name, "layers": model.layers,
                "inputs": model.inputs, "outputs": model.outputs, "params": model.params}
