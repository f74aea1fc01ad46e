"""Open Inference Protocol (KServe v2) at /v2: health, metadata, infer; errors `{"error"}`."""

from flask import Response, request
from flask.views import MethodView

from schemas.oip import (
    INFER_REQUEST_BODY,
    INFER_RESPONSE,
    OipErrorSchema,
    OipLiveSchema,
    OipModelMetadataSchema,
    OipModelReadySchema,
    OipReadySchema,
    OipServerMetadataSchema,
)
from service import oip
from service.api.context import services, tenant_id
from service.api.health import readiness_checks
from service.api.parsing import Blueprint
from service.errors import UnsupportedMediaType, register_protocol_error_handlers

blp = Blueprint("oip", __name__, url_prefix="/v2", error_schema=OipErrorSchema,
                error_media_type="application/json",
                description="Open Inference Protocol (KServe v2), with Triton's binary tensor "
                            "data extension; tritonclient works unchanged.")
register_protocol_error_handlers(blp)

MODEL = "/models/<name>"
VERSION = "/models/<name>/versions/<version>"


def _errors(*codes):
    """Document the protocol's error answers for `codes`."""
    reasons = {400: "A malformed request or tensor.", 404: "No such model or version.",
               409: "The model has no trained version yet.", 413: "Past the body size cap.",
               415: "A compressed body.", 422: "A tensor the model cannot take."}

    def decorate(view):
        for code in codes:
            view = blp.alt_response(code, schema=OipErrorSchema, description=reasons[code])(view)
        return view
    return decorate


@blp.route("")
class ServerMetadata(MethodView):
    @blp.response(200, OipServerMetadataSchema)
    def get(self):
        """Describe the server: name, version, protocol extensions"""
        return oip.server_metadata()


@blp.route("/health/live")
class Live(MethodView):
    @blp.doc(security=[])  # probes need no API key
    @blp.response(200, OipLiveSchema)
    def get(self):
        """Answer 200 while the process is up"""
        return {"live": True}


@blp.route("/health/ready")
class Ready(MethodView):
    @blp.doc(security=[])  # probes need no API key
    @blp.response(200, OipReadySchema)
    @blp.alt_response(503, schema=OipReadySchema, description="A dependency is unavailable.")
    def get(self):
        """Answer 200 when the registry is reachable and the artifact store writable"""
        down = [name.replace("_", " ") for name, up in readiness_checks().items() if not up]
        if down:
            return {"ready": False, "error": f"Unavailable: {', '.join(down)}."}, 503
        return {"ready": True}


class _ModelMetadata(MethodView):
    @blp.response(200, OipModelMetadataSchema)
    @_errors(400, 404)
    def get(self, name, version=None):
        """Describe a model: its versions, and its inputs and outputs (-1: any size)"""
        return oip.model_metadata(services().inference, tenant_id(), name, version)


class _ModelReady(MethodView):
    @blp.response(200, OipModelReadySchema)
    @blp.alt_response(503, schema=OipModelReadySchema, description="No trained version yet.")
    @_errors(400, 404)
    def get(self, name, version=None):
        """Answer 200 when the model (version) can serve inference requests"""
        ready, why_not = oip.model_ready(services().inference, tenant_id(), name, version)
        if not ready:
            return {"name": name, "ready": False, "error": why_not}, 503
        return {"name": name, "ready": True}


class _Infer(MethodView):
    @blp.doc(requestBody=INFER_REQUEST_BODY, responses={"200": INFER_RESPONSE})
    @_errors(400, 404, 409, 413, 415, 422)
    def post(self, name, version=None):
        """Infer: tensors as JSON, or as binary tensor data after a JSON header"""
        if request.headers.get("Content-Encoding", "identity") != "identity":
            raise UnsupportedMediaType("Compressed request bodies (Content-Encoding) are not "
                                       "accepted; send the body uncompressed.")
        answer = oip.infer(services().inference, tenant_id(), name, version,
                           request.get_data(), request.headers.get(oip.HEADER_LENGTH))
        headers = {} if answer.header_length is None else {
            oip.HEADER_LENGTH: str(answer.header_length)}
        return Response(answer.body, 200, headers, content_type=answer.content_type)


# Each route with and without /versions/<version>, as the protocol gives them.
for path, view in ((MODEL, _ModelMetadata), (MODEL + "/ready", _ModelReady),
                   (MODEL + "/infer", _Infer)):
    blp.route(path, endpoint=view.__name__.strip("_"))(view)
    blp.route(path.replace(MODEL, VERSION),
              endpoint=view.__name__.strip("_") + "Version")(view)
