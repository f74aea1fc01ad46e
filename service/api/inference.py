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
from service.inference.payloads import ANSWER_TYPES, answer, read_request

blp = Blueprint("inference", __name__, url_prefix="/models",
                description="Predict and evaluate with a model's latest or a chosen version.")


@blp.route("/<model_id>/predict")
class Predict(MethodView):
    # The hot path: the body is read by `read_request` (orjson, no marshmallow) and the
    # answer written by orjson from numpy; the schemas here only document it.
    @blp.doc(requestBody=PREDICT_BODY, parameters=[VERSION_QUERY], responses=PREDICT_ANSWERS)
    @blp.response(200, PredictionSchema, headers={"X-Model-Version": {
        "description": "The version that answered.", "schema": {"type": "integer"}}})
    @blp.alt_response(400, schema=ProblemSchema, description="Inputs missing or of another form.")
    @blp.alt_response(404, schema=ProblemSchema, description="No such model or version.")
    @blp.alt_response(406, schema=ProblemSchema,
                      description="Accept: application/x-npy for a model with several outputs.")
    @blp.alt_response(409, schema=ProblemSchema, description="No trained version yet.")
    @blp.alt_response(413, schema=ProblemSchema,
                      description="The body is larger than KERAS_SERVICE_MAX_BODY_BYTES.")
    @blp.alt_response(415, schema=ProblemSchema, description="A body of another media type.")
    @blp.alt_response(422, schema=ProblemSchema,
                      description="An array of the wrong shape or values, or past the cap.")
    @blp.alt_response(503, schema=ProblemSchema,
                      description="The model's batching queue is full; see Retry-After.")
    def post(self, model_id):
        """Predict: rows as `instances`, columns as `inputs`, or a .npy/.npz body"""
        parsed = read_request(request.get_data(), request.mimetype, request.args.get("version"))
        prediction = services().inference.predict(tenant_id(), model_id, parsed)
        body, mimetype = answer(prediction.outputs, prediction.model, prediction.version.number,
                                request.accept_mimetypes.best_match(ANSWER_TYPES))
        return Response(body, mimetype=mimetype,
                        headers={"X-Model-Version": str(prediction.version.number)})


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
