"""Predict and evaluate with a trained version, in the request."""

from flask import Response, request
from flask.views import MethodView

from schemas.common import ProblemSchema
from schemas.inference import (
    PREDICT_ANSWERS,
    PREDICT_BODY,
    VERSION_QUERY,
    EvaluateSchema,
    EvaluationSchema,
    PredictionSchema,
)
from service.api.context import services, tenant_id
from service.api.parsing import Blueprint
from service.inference.payloads import ANSWER_TYPES, JSON, answer, read_request

blp = Blueprint("inference", __name__, url_prefix="/models",
                description="Predict and evaluate with a model's latest or a chosen version.")


def documented(*decorators):
    """flask-smorest's decorators applied for the OpenAPI document only: the view runs bare.

    Each of them wraps the view in a function that runs on every request (about 50 us for
    predict's ten, a tenth of a one-row predict); predict's view returns a finished
    Response, which they would only pass along.
    """
    def document(view):
        wrapped = view
        for decorator in reversed(decorators):
            wrapped = decorator(wrapped)
        view._apidoc = wrapped._apidoc
        return view

    return document


@blp.route("/<model_id>/predict")
class Predict(MethodView):
    # The hot path: the body is read by `read_request` (simdjson or orjson, no marshmallow)
    # and the answer written by orjson from numpy; the schemas here only document it.
    @documented(
        blp.doc(requestBody=PREDICT_BODY, parameters=[VERSION_QUERY], responses=PREDICT_ANSWERS),
        blp.response(200, PredictionSchema, headers={"X-Model-Version": {
            "description": "The version that answered.", "schema": {"type": "integer"}}}),
        blp.alt_response(400, schema=ProblemSchema,
                         description="Inputs missing or of another form."),
        blp.alt_response(404, schema=ProblemSchema, description="No such model or version."),
        blp.alt_response(406, schema=ProblemSchema,
                         description="Accept: application/x-npy for a model with several outputs."),
        blp.alt_response(409, schema=ProblemSchema, description="No trained version yet."),
        blp.alt_response(413, schema=ProblemSchema,
                         description="The body is larger than KERAS_SERVICE_MAX_BODY_BYTES."),
        blp.alt_response(415, schema=ProblemSchema, description="A body of another media type."),
        blp.alt_response(422, schema=ProblemSchema,
                         description="An array of the wrong shape or values, or past the cap."),
        blp.alt_response(503, schema=ProblemSchema,
                         description="The model's batching queue is full; see Retry-After."))
    def post(self, model_id):
        """Predict: rows as `instances`, columns as `inputs`, or a .npy/.npz body"""
        parsed = read_request(request.get_data(), request.mimetype, _query_version())
        prediction = services().inference.predict(tenant_id(), model_id, parsed)
        body, mimetype = answer(prediction.outputs, prediction.model, prediction.version.number,
                                _answer_type())
        return Response(body, mimetype=mimetype,
                        headers={"X-Model-Version": str(prediction.version.number)})


# werkzeug parses the query string and the Accept header on first use, even when there is
# nothing to parse: about 10 and 40 us, as much as the rest of the view. Most clients send
# no query and no Accept, */* or application/json.

def _query_version() -> str | None:
    return request.args.get("version") if request.environ.get("QUERY_STRING") else None


def _answer_type() -> str | None:
    accept = request.environ.get("HTTP_ACCEPT")
    if accept in (None, "", "*/*", JSON):
        return JSON
    return request.accept_mimetypes.best_match(ANSWER_TYPES)


@blp.route("/<model_id>/evaluate")
class Evaluate(MethodView):
    @blp.arguments(EvaluateSchema)
    @blp.response(200, EvaluationSchema)
    @blp.alt_response(404, schema=ProblemSchema, description="No such model, version or dataset.")
    @blp.alt_response(409, schema=ProblemSchema, description="No trained version yet.")
    @blp.alt_response(422, schema=ProblemSchema,
                      description="Arrays of the wrong shape, or that Keras refused.")
    def post(self, request, model_id):
        """Evaluate the loss and metrics on an uploaded dataset or on inline x and y"""
        return services().inference.evaluate(tenant_id(), model_id, request)
