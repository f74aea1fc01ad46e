"""TensorFlow Serving's REST API at /v1: model status, metadata, predict.

A model is addressed by name, optionally with `/versions/{v}` or `/labels/{label}`. Errors
are `{"error": "..."}` with the status codes TF Serving gives its gRPC codes (anything it
does not route is a 400 "Malformed request", as in TF Serving).
"""

import orjson
from flask import Response, request
from flask.views import MethodView
from werkzeug.routing import PathConverter

from schemas.tfserving import (
    TFErrorSchema,
    TFModelMetadataSchema,
    TFModelStatusSchema,
    TFPredictRequestSchema,
    TFPredictResponseSchema,
)
from service.api.context import services, tenant_id
from service.api.parsing import Blueprint, json_depth
from service.errors import MalformedRequest, register_protocol_error_handlers
from service.inference.inputs import has_json_literals
from service.tfserving import Address

# TF Serving answers INVALID_ARGUMENT and FAILED_PRECONDITION with 400; the native API's
# 409 (wrong state), 412 and 422 (invalid values) are those here.
TFS_STATUS = {409: 400, 412: 400, 422: 400}
ANY_METHOD = ["GET", "POST", "PUT", "PATCH", "DELETE"]
# Below this size the whole body is checked for depth; a larger one is tensors, whose rank
# the check against the model's input shapes bounds (as for the native predict).
DEPTH_CHECK_BYTES = 64 * 1024
PREDICT_BODY = {"required": True, "content": {"application/json": {
    "schema": TFPredictRequestSchema}}, "description": "Read as JSON whatever its "
    "Content-Type, as TF Serving reads it (curl -d, requests.post(url, data=...))."}

blp = Blueprint("tfserving", __name__, url_prefix="/v1", error_schema=TFErrorSchema,
                error_media_type="application/json",
                description="TensorFlow Serving's REST API: clients written for TF Serving "
                            "work unchanged.")
register_protocol_error_handlers(blp)


class EveryPathConverter(PathConverter):
    """`path`, newlines included (its `.` stops at them), so that every /v1 path the routes
    below do not take is TF Serving's 400, not a 404 of the native API."""

    regex = "(?s:[^/].*?)"


blp.record_once(lambda state: state.app.url_map.converters.setdefault(
    "every_path", EveryPathConverter))


@blp.after_request
def tf_serving_status(response):
    response.status_code = TFS_STATUS.get(response.status_code, response.status_code)
    return response


def address(name: str, version: int | None = None, label: str | None = None) -> Address:
    """The URL's model, version and label; a ':' in a name means no /v1 route matched."""
    if ":" in name or ":" in (label or ""):
        raise malformed()
    return Address(name, version, label)


def malformed() -> MalformedRequest:
    return MalformedRequest(f"Malformed request: {request.method} {request.path}")


def tfs():
    return services().tfserving


def json_body() -> dict:
    """The body as a JSON object; as in TF Serving, whatever its Content-Type."""
    body = request.get_data()
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise MalformedRequest(f"JSON Parse error: the body is not valid JSON: {error}. "
                               'Expected an object such as {"instances": [...]}.') from None
    if not isinstance(value, dict):
        raise MalformedRequest("JSON Value: the body is not a JSON object; expected one such "
                               'as {"instances": [...]}.')
    limit = services().config.max_json_depth
    if len(body) <= DEPTH_CHECK_BYTES and json_depth(value, limit) > limit:
        raise MalformedRequest(f"The JSON body is nested deeper than {limit} levels "
                               "(KERAS_SERVICE_MAX_JSON_DEPTH).")
    return value


@blp.route("/models/<name>", endpoint="status")
@blp.route("/models/<name>/versions/<int:version>", endpoint="status_version")
@blp.route("/models/<name>/labels/<label>", endpoint="status_label")
class ModelStatus(MethodView):
    @blp.response(200, TFModelStatusSchema)
    @blp.alt_response(400, schema=TFErrorSchema, description="Unknown label.")
    @blp.alt_response(404, schema=TFErrorSchema, description="No such model or version.")
    def get(self, name, version=None, label=None):
        """Model status: all versions, newest first, or the one addressed"""
        return tfs().status(tenant_id(), address(name, version, label))


@blp.route("/models/<name>/metadata", endpoint="metadata")
@blp.route("/models/<name>/versions/<int:version>/metadata", endpoint="metadata_version")
@blp.route("/models/<name>/labels/<label>/metadata", endpoint="metadata_label")
class ModelMetadata(MethodView):
    @blp.response(200, TFModelMetadataSchema)
    @blp.alt_response(400, schema=TFErrorSchema, description="Unknown label.")
    @blp.alt_response(404, schema=TFErrorSchema, description="No such model or version.")
    def get(self, name, version=None, label=None):
        """Model metadata: the serving_default signature_def (latest version by default)"""
        return tfs().metadata(tenant_id(), address(name, version, label))


@blp.route("/models/<name>:predict", endpoint="predict")
@blp.route("/models/<name>/versions/<int:version>:predict", endpoint="predict_version")
@blp.route("/models/<name>/labels/<label>:predict", endpoint="predict_label")
class Predict(MethodView):
    # The hot path: orjson reads the body and writes numpy; the schemas only document them.
    @blp.doc(requestBody=PREDICT_BODY)
    @blp.response(200, TFPredictResponseSchema)
    @blp.alt_response(400, schema=TFErrorSchema,
                      description="Malformed body, bad tensors, unknown signature or label.")
    @blp.alt_response(404, schema=TFErrorSchema, description="No such model or version.")
    @blp.alt_response(413, schema=TFErrorSchema,
                      description="The body is larger than KERAS_SERVICE_MAX_BODY_BYTES.")
    def post(self, name, version=None, label=None):
        """Predict: `instances` (rows) -> `predictions`, `inputs` (columns) -> `outputs`"""
        where = address(name, version, label)
        answer = tfs().predict(tenant_id(), where, json_body(),
                               plain_numbers=not has_json_literals(request.get_data()))
        return Response(orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY),
                        mimetype="application/json")


@blp.route("/models/<name>:classify", endpoint="classify")
@blp.route("/models/<name>/versions/<int:version>:classify", endpoint="classify_version")
@blp.route("/models/<name>/labels/<label>:classify", endpoint="classify_label")
class Classify(MethodView):
    @blp.response(400, TFErrorSchema, description="Always: Keras models export no "
                                                  "classification signature.")
    @blp.alt_response(404, schema=TFErrorSchema, description="No such model or version.")
    def post(self, name, version=None, label=None):
        """Classify: refused as TF Serving refuses it for a predict-only model"""
        tfs().classify_or_regress(tenant_id(), address(name, version, label), "classify")


@blp.route("/models/<name>:regress", endpoint="regress")
@blp.route("/models/<name>/versions/<int:version>:regress", endpoint="regress_version")
@blp.route("/models/<name>/labels/<label>:regress", endpoint="regress_label")
class Regress(MethodView):
    @blp.response(400, TFErrorSchema, description="Always: Keras models export no "
                                                  "regression signature.")
    @blp.alt_response(404, schema=TFErrorSchema, description="No such model or version.")
    def post(self, name, version=None, label=None):
        """Regress: refused as TF Serving refuses it for a predict-only model"""
        tfs().classify_or_regress(tenant_id(), address(name, version, label), "regress")


@blp.route("/<every_path:rest>", methods=ANY_METHOD, endpoint="malformed")
@blp.response(400, TFErrorSchema, description="Always.")
def malformed_request(rest):
    """Anything else under /v1: 400 "Malformed request", as TF Serving answers"""
    raise malformed()
