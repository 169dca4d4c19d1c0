"""Dataflow jobs after submission: their state and counters, following them, draining and
cancelling them, through the Dataflow API (``google-cloud-dataflow-client``, Beam's own).

Following never changes a job: stopping to follow (Ctrl-C) detaches and the job runs on.
Draining (streaming: stop reading, finish what is in flight, fire every window) and cancelling
(stop now, in-flight data lost) are separate, explicit calls.

A job is named by its id (``2026-12-02_07_41_05-123...``) or by its name (``streamforge-all``):
a name means the running (or draining) job of that name, the one ``--update`` would replace.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import google.auth
from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.auth import credentials as auth_credentials
from google.auth.exceptions import DefaultCredentialsError
from google.cloud import dataflow_v1beta3 as dataflow

__all__ = ["ACTIVE_STATES", "TERMINAL_STATES", "ControlError", "DataflowJobs", "JobStatus", "follow"]

_JOB_ID = re.compile(r"^\d{4}-\d{2}-\d{2}_\d{2}_\d{2}_\d{2}-\d+$")
ACTIVE_STATES = ("JOB_STATE_RUNNING", "JOB_STATE_DRAINING")
TERMINAL_STATES = (
    "JOB_STATE_DONE",
    "JOB_STATE_FAILED",
    "JOB_STATE_CANCELLED",
    "JOB_STATE_UPDATED",
    "JOB_STATE_DRAINED",
    "JOB_STATE_STOPPED_UNKNOWN",
)
_LOOPBACK = re.compile(r"^(https?://)?(127\.0\.0\.1|localhost|\[::1\])(:\d+)?/?$")


class ControlError(RuntimeError):
    """The Dataflow API could not do what was asked (the message says what and why)."""


@dataclass(frozen=True)
class JobStatus:
    id: str
    name: str
    state: str  # JOB_STATE_RUNNING, ...
    type: str  # JOB_TYPE_STREAMING or JOB_TYPE_BATCH
    counters: dict[str, dict[str, int]]  # user counters: {namespace: {name: value}}, summed over steps

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES


class DataflowJobs:
    """The jobs of one project and region. ``endpoint``: another API endpoint (a local test
    server on loopback is called without credentials)."""

    def __init__(self, project: str, region: str, *, endpoint: str | None = None):
        self.project, self.region = project, region
        options, credentials = None, None
        if endpoint:
            options = ClientOptions(api_endpoint=endpoint)
            if _LOOPBACK.match(endpoint):
                credentials = auth_credentials.AnonymousCredentials()
        if credentials is None:
            credentials = _default_credentials()
        self._jobs = dataflow.JobsV1Beta3Client(credentials=credentials, client_options=options, transport="rest")
        self._metrics = dataflow.MetricsV1Beta3Client(credentials=credentials, client_options=options, transport="rest")

    def _call(self, what: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except exceptions.GoogleAPICallError as exc:
            raise ControlError(
                f"{what} in project {self.project}, region {self.region}: {exc.message or exc}"
            ) from None

    def resolve(self, job: str) -> str:
        """The id of ``job`` (an id, or the name of a running or draining job)."""
        if _JOB_ID.match(job):
            return job
        request = dataflow.ListJobsRequest(
            project_id=self.project, location=self.region, filter=dataflow.ListJobsRequest.Filter.ACTIVE
        )
        for found in self._call(f"listing jobs to find {job}", lambda: list(self._jobs.list_jobs(request=request))):
            if found.name == job and dataflow.JobState(found.current_state).name in ACTIVE_STATES:
                return found.id
        raise ControlError(f"no running job named {job} in project {self.project}, region {self.region}")

    def status(self, job_id: str) -> JobStatus:
        job = self._call(
            f"job {job_id}",
            lambda: self._jobs.get_job(
                request=dataflow.GetJobRequest(project_id=self.project, location=self.region, job_id=job_id)
            ),
        )
        metrics = self._call(
            f"counters of job {job_id}",
            lambda: self._metrics.get_job_metrics(
                request=dataflow.GetJobMetricsRequest(project_id=self.project, location=self.region, job_id=job_id)
            ),
        )
        return JobStatus(
            job.id,
            job.name,
            dataflow.JobState(job.current_state).name,
            dataflow.JobType(job.type_).name,
            _user_counters(metrics),
        )

    def _request_state(self, job_id: str, state: str) -> None:
        request = dataflow.UpdateJobRequest(
            project_id=self.project,
            location=self.region,
            job_id=job_id,
            job=dataflow.Job(requested_state=getattr(dataflow.JobState, state)),
        )
        self._call(
            f"{state.removeprefix('JOB_STATE_').lower()} job {job_id}", lambda: self._jobs.update_job(request=request)
        )

    def drain(self, job_id: str) -> None:
        """Streaming: stop reading, finish what is in flight (windows fire), then stop."""
        self._request_state(job_id, "JOB_STATE_DRAINED")

    def cancel(self, job_id: str) -> None:
        """Stop now; what is in flight is lost."""
        self._request_state(job_id, "JOB_STATE_CANCELLED")


def _default_credentials() -> auth_credentials.Credentials:
    try:
        credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    except DefaultCredentialsError as exc:
        raise ControlError(
            f"no Google Cloud credentials ({exc}): run `gcloud auth application-default login`"
        ) from None
    return credentials


def _user_counters(metrics: Any) -> dict[str, dict[str, int]]:
    """The pipeline's own counters (origin ``user``), summed over steps; the live (tentative)
    value where the service has one."""
    by_key: dict[tuple[str, str, str], dict[bool, float]] = {}
    for update in metrics.metrics:
        name = update.name
        context = dict(name.context)
        if name.origin != "user" or "namespace" not in context or update.scalar is None:
            continue
        value = update.scalar
        if not isinstance(value, (int, float)):
            continue
        key = (context["namespace"], name.name, context.get("step", ""))
        by_key.setdefault(key, {})[context.get("tentative") == "true"] = value
    totals: dict[str, dict[str, int]] = {}
    for (namespace, counter, _step), values in by_key.items():
        value = values.get(True, values.get(False, 0))
        totals.setdefault(namespace, {})
        totals[namespace][counter] = totals[namespace].get(counter, 0) + int(value)
    return totals


def follow(
    jobs: DataflowJobs, job_id: str, *, every_s: float = 15.0, should_stop: Callable[[], bool] = lambda: False
) -> Iterator[JobStatus]:
    """The job's status now and every ``every_s`` seconds until it ends, or until
    ``should_stop()`` (then it just stops following: the job is not touched)."""
    while True:
        status = jobs.status(job_id)
        yield status
        if status.terminal:
            return
        deadline = time.monotonic() + every_s
        while time.monotonic() < deadline:
            if should_stop():
                return
            time.sleep(min(0.2, every_s))
