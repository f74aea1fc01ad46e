"""Versions: the immutable files successful fits wrote; list, read, download."""

from flask import send_file
from flask.views import MethodView

from schemas.common import ProblemSchema
from schemas.versions import VersionListSchema, VersionSchema
from service.api.context import services, tenant_id
from service.api.parsing import Blueprint

blp = Blueprint("versions", __name__, url_prefix="/models",
                description="Trained versions of a model: one per successful fit, immutable.")

KERAS_FILE = {"type": "string", "format": "binary"}


@blp.route("/<model_id>/versions")
class Versions(MethodView):
    @blp.response(200, VersionListSchema)
    @blp.alt_response(404, schema=ProblemSchema, description="No such model.")
    def get(self, model_id):
        """List a model's versions, oldest first"""
        model, versions = services().inference.list_versions(tenant_id(), model_id)
        return {"model_id": model.id, "items": versions}


@blp.route("/<model_id>/versions/<int:number>")
class VersionByNumber(MethodView):
    @blp.response(200, VersionSchema)
    @blp.alt_response(404, schema=ProblemSchema, description="No such model or version.")
    def get(self, model_id, number):
        """Read one version: checksum, size, final metrics, the job that made it"""
        return services().inference.get_version(tenant_id(), model_id, number)


@blp.route("/<model_id>/versions/<int:number>/artifact")
class VersionArtifact(MethodView):
    @blp.response(200, KERAS_FILE, content_type="application/octet-stream",
                  description="The .keras file (ETag: its sha256; Range requests work).")
    @blp.alt_response(304, description="If-None-Match matched: the file has not changed.")
    @blp.alt_response(404, schema=ProblemSchema, description="No such model or version.")
    def get(self, model_id, number):
        """Download a version's .keras file (loads with keras.saving.load_model)"""
        artifact = services().inference.artifact(tenant_id(), model_id, number)
        response = send_file(artifact.path, mimetype="application/octet-stream",
                             etag=artifact.sha256, conditional=True)
        # Model names are letters, digits, '_', '.', '-': safe inside the quotes.
        response.headers["Content-Disposition"] = (
            f'attachment; filename="{artifact.download_name}"')
        return response
