"""The allow-list: what layers, losses, optimizers, metrics and activations are accepted."""

from flask.views import MethodView

from schemas.service import CatalogSchema
from service.api.context import services
from service.api.parsing import Blueprint

blp = Blueprint("catalog", __name__, description="What this service accepts.")


@blp.route("/catalog")
class Catalog(MethodView):
    @blp.response(200, CatalogSchema)
    def get(self):
        """List accepted layers (with their arguments), losses, optimizers, metrics"""
        return services().models.catalog()
