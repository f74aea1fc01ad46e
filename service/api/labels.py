"""Labels: point `stable`, `canary`, ... at a model's versions; /v1 serves them by label."""

from flask.views import MethodView

from schemas.common import ProblemSchema
from schemas.labels import LABEL_NAME, LabelListSchema, LabelSchema, LabelSetSchema
from service.api.context import services, tenant_id
from service.api.parsing import Blueprint

blp = Blueprint("labels", __name__, url_prefix="/models",
                description="Labels pointing at versions, served by /v1/models/{name}/labels/"
                            "{label}.")

LABEL_PARAMETER = {"in": "path", "name": "label", "schema": LABEL_NAME}


@blp.route("/<model_id>/labels")
class Labels(MethodView):
    @blp.response(200, LabelListSchema)
    @blp.alt_response(404, schema=ProblemSchema, description="No such model.")
    def get(self, model_id):
        """List a model's labels and the versions they point at"""
        model, labels = services().labels.list(tenant_id(), model_id)
        return {"model_id": model.id, "items": labels}


@blp.route("/<model_id>/labels/<label>", parameters=[LABEL_PARAMETER])
class LabelByName(MethodView):
    @blp.response(200, LabelSchema)
    @blp.alt_response(404, schema=ProblemSchema, description="No such model or label.")
    def get(self, model_id, label):
        """Read one label"""
        return services().labels.get(tenant_id(), model_id, label)

    @blp.arguments(LabelSetSchema)
    @blp.response(200, LabelSchema)
    @blp.alt_response(404, schema=ProblemSchema, description="No such model or version.")
    @blp.alt_response(422, schema=ProblemSchema, description="A bad label name or version.")
    def put(self, body, model_id, label):
        """Point a label at a version, creating it or moving it"""
        return services().labels.set(tenant_id(), model_id, label, body["version"])

    @blp.response(204)
    @blp.alt_response(404, schema=ProblemSchema, description="No such model or label.")
    def delete(self, model_id, label):
        """Remove a label"""
        services().labels.delete(tenant_id(), model_id, label)
