"""Liveness and readiness, for load balancers and orchestrators."""

from flask.views import MethodView

from schemas.service import HealthSchema, ReadySchema
from service.api.context import services
from service.api.parsing import Blueprint

blp = Blueprint("health", __name__, description="Liveness and readiness.")


def readiness_checks() -> dict[str, bool]:
    """What readiness means, for /readyz and /v2/health/ready alike."""
    return {"registry": services().database.ping(),
            "artifact_store": services().store.is_writable()}


@blp.route("/healthz")
class Health(MethodView):
    @blp.doc(security=[])  # probes need no API key
    @blp.response(200, HealthSchema)
    def get(self):
        """Answer while the process is up"""
        return {"status": "ok"}


@blp.route("/readyz")
class Ready(MethodView):
    @blp.doc(security=[])  # probes need no API key
    @blp.response(200, ReadySchema)
    @blp.alt_response(503, schema=ReadySchema, description="A dependency is unavailable.")
    def get(self):
        """Answer 200 when the registry is reachable and the artifact store writable"""
        checks = readiness_checks()
        ready = all(checks.values())
        return {"status": "ready" if ready else "unavailable", "checks": checks}, \
            200 if ready else 503
