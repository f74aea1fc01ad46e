"""Prometheus metrics of every web worker, for a scraper."""

from flask import Response
from flask.views import MethodView

from service import metrics
from service.api.context import services
from service.api.parsing import Blueprint

blp = Blueprint("metrics", __name__, description="Prometheus metrics.")


@blp.route("/metrics")
class Metrics(MethodView):
    # flask-smorest writes a response's content only for a schema; this one is plain text.
    @blp.doc(responses={"200": {
        "description": "Prometheus text exposition format (0.0.4): HTTP requests, "
                       "predictions, model cache, jobs by state.",
        "content": {"text/plain": {
            "schema": {"type": "string"},
            "example": 'keras_service_http_requests_total{method="GET",route="/healthz",'
                       'status="200"} 12.0'}}}})
    def get(self):
        """Metrics of all web workers, in the Prometheus text format"""
        body = metrics.exposition(services().training.jobs.count_by_state())
        return Response(body, content_type=metrics.CONTENT_TYPE)
