"""The OpenAPI document as YAML, and Swagger UI's files served locally (no CDN)."""

from pathlib import Path

import swagger_ui_bundle
from flask import Blueprint as FlaskBlueprint
from flask import Response, current_app, send_from_directory
from flask.views import MethodView

from service.api.parsing import Blueprint

blp = Blueprint("docs", __name__, description="This API's own description.")
# Swagger UI's JavaScript and CSS: static files, not part of the API, so not in its document.
assets = FlaskBlueprint("docs_assets", __name__)
SWAGGER_UI_DIR = Path(swagger_ui_bundle.swagger_ui_path)


@blp.route("/openapi.yaml")
class OpenApiYaml(MethodView):
    @blp.response(200, content_type="application/yaml",
                  description="The OpenAPI 3.1 document (also at /openapi.json; "
                              "interactive at /docs).")
    def get(self):
        """The OpenAPI 3.1 document of this service"""
        return Response(current_app.extensions["openapi_yaml"], mimetype="application/yaml")


@assets.get("/docs/assets/<path:filename>")
def swagger_ui_asset(filename):
    return send_from_directory(SWAGGER_UI_DIR, filename)
