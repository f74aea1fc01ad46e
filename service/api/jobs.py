"""Fits and training jobs: queue a fit, follow it (JSON or Server-Sent Events), cancel it."""

from flask import Response, request, stream_with_context
from flask.views import MethodView

from schemas.common import ProblemSchema
from schemas.jobs import FitSchema, JobListQuerySchema, JobPageSchema, JobSchema
from service.api.context import if_match, page, services, tenant_id
from service.api.parsing import Blueprint
from service.job_events import job_events

blp = Blueprint("jobs", __name__, description="Train models: fit jobs, progress, cancel.")


@blp.route("/models/<model_id>/fit")
class ModelFit(MethodView):
    @blp.arguments(FitSchema)
    @blp.response(202, JobSchema, headers={"Location": {
        "description": "/jobs/{id} of the queued job", "schema": {"type": "string"}}})
    @blp.alt_response(404, schema=ProblemSchema, description="No such model or dataset.")
    @blp.alt_response(409, schema=ProblemSchema, description="The model is not compiled.")
    @blp.alt_response(422, schema=ProblemSchema,
                      description="The data does not fit the model, or a cap is passed.")
    @blp.alt_response(429, schema=ProblemSchema, description="Too many jobs queued.")
    def post(self, fit_request, model_id):
        """Queue a fit of the model on a dataset; answers at once with the job"""
        job = services().training.fit(tenant_id(), model_id, fit_request, if_match())
        return job, 202, {"Location": f"/jobs/{job.id}"}


@blp.route("/jobs")
class Jobs(MethodView):
    @blp.arguments(JobListQuerySchema, location="query")
    @blp.response(200, JobPageSchema)
    def get(self, query):
        """List jobs, newest first, by model and state"""
        items, total = services().training.list(tenant_id(), **query)
        return page(items, total, query)


@blp.route("/jobs/<job_id>")
class JobById(MethodView):
    @blp.response(200, JobSchema)
    @blp.alt_response(404, schema=ProblemSchema, description="No such job.")
    def get(self, job_id):
        """Read a job: state, progress, per-epoch history, error, version"""
        return services().training.get(tenant_id(), job_id)


@blp.route("/jobs/<job_id>/cancel")
class JobCancel(MethodView):
    @blp.response(200, JobSchema)
    @blp.alt_response(404, schema=ProblemSchema, description="No such job.")
    @blp.alt_response(409, schema=ProblemSchema, description="The job has already ended.")
    def post(self, job_id):
        """Cancel a job: it stops at the next batch and the model stays as it was"""
        return services().training.cancel(tenant_id(), job_id)


@blp.route("/jobs/<job_id>/events")
class JobEvents(MethodView):
    @blp.response(200, content_type="text/event-stream",
                  description="Server-Sent Events: `progress`, `epoch` (id = epoch number), "
                              "and a last `end` event; `Last-Event-ID` resumes.")
    @blp.alt_response(404, schema=ProblemSchema, description="No such job.")
    def get(self, job_id):
        """Follow a job live as Server-Sent Events (curl -N)"""
        training, tenant = services().training, tenant_id()
        training.get(tenant, job_id)  # a 404 now, before the stream starts

        def read_job():
            return training.get(tenant, job_id)

        events = job_events(read_job, request.headers.get("Last-Event-ID"))
        return Response(stream_with_context(events), mimetype="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
