"""Predict and evaluate with a trained version, in the request."""

from flask.views import MethodView

from schemas.common import ProblemSchema
from schemas.inference import EvaluateSchema, EvaluationSchema, PredictionSchema, PredictSchema
from service.api.context import services, tenant_id
from service.api.parsing import Blueprint

blp = Blueprint("inference", __name__, url_prefix="/models",
                description="Predict and evaluate with a model's latest or a chosen version.")


@blp.route("/<model_id>/predict")
class Predict(MethodView):
    @blp.arguments(PredictSchema)
    @blp.response(200, PredictionSchema)
    @blp.alt_response(400, schema=ProblemSchema, description="Inputs missing or of another form.")
    @blp.alt_response(404, schema=ProblemSchema, description="No such model or version.")
    @blp.alt_response(409, schema=ProblemSchema, description="No trained version yet.")
    @blp.alt_response(422, schema=ProblemSchema,
                      description="An array of the wrong shape or values, or past the cap.")
    def post(self, request, model_id):
        """Predict: rows as `instances`, or columns as `inputs` ({input_name: array})"""
        return services().inference.predict(tenant_id(), model_id, request)


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
