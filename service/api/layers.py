"""Layers of a Sequential model: Keras' `add` and `pop`, over HTTP."""

from flask.views import MethodView

from schemas.common import ProblemSchema
from schemas.models import LayerListSchema, LayerSpecSchema, ModelSchema
from service.api.context import if_match, services, tenant_id, with_etag
from service.api.parsing import Blueprint

blp = Blueprint("layers", __name__, url_prefix="/models",
                description="Add and remove the layers of a Sequential model.")


@blp.route("/<model_id>/layers")
class Layers(MethodView):
    @blp.arguments(LayerSpecSchema)
    @blp.response(201, ModelSchema)
    @blp.alt_response(404, schema=ProblemSchema, description="No such model.")
    @blp.alt_response(409, schema=ProblemSchema, description="Wrong state or functional model.")
    @blp.alt_response(422, schema=ProblemSchema, description="Keras cannot build the layer.")
    def post(self, layer, model_id):
        """Add a layer at the end (a compiled model goes back to draft)"""
        return with_etag(
            services().models.add_layer(tenant_id(), model_id, layer, if_match()), 201)

    @blp.response(200, LayerListSchema)
    @blp.alt_response(404, schema=ProblemSchema, description="No such model.")
    def get(self, model_id):
        """List a model's layers with their output shapes and parameter counts"""
        model = services().models.get(tenant_id(), model_id)
        return {"model_id": model.id, "layers": model.layers}


@blp.route("/<model_id>/layers/<int:index>")
class LayerByIndex(MethodView):
    @blp.response(200, ModelSchema)
    @blp.alt_response(404, schema=ProblemSchema, description="No layer at that index.")
    @blp.alt_response(422, schema=ProblemSchema, description="The rest no longer builds.")
    def delete(self, model_id, index):
        """Remove the layer at `index` (a compiled model goes back to draft)"""
        return with_etag(
            services().models.remove_layer(tenant_id(), model_id, index, if_match()))
