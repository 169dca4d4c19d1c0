"""Building jobs for Dataflow offline (the DataflowRunner's dry run) and looking into them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from apache_beam.portability.api import beam_runner_api_pb2

from beam_pipelines.requests import Request, analytics_request, cdc_request
from beam_pipelines.runner import Submission, pipeline_options, run
from streamforge.config import Config, load_config
from tests.support.network import no_network

PROJECT, REGION = "my-proj-123", "europe-west1"
BUCKET = "gs://streamforge-test-bucket"  # a valid bucket name: an invalid one makes Beam go online
IMAGE = f"{REGION}-docker.pkg.dev/{PROJECT}/streamforge/streamforge:test"
WAREHOUSE = f"bigquery://{PROJECT}.analytics"
ALERTS, DEAD_LETTERS = f"projects/{PROJECT}/topics/fraud-alerts", f"projects/{PROJECT}/topics/dead-letter"
JOBS = ("sessions", "revenue", "fraud", "all", "cdc")


def subscription(name: str) -> str:
    return f"pubsub://projects/{PROJECT}/subscriptions/{name}"


def request_for(job: str, streaming: bool, config: Config | None = None) -> Request:
    """``job`` reading Pub/Sub (streaming) or gs:// (batch) into BigQuery, with the alert and
    dead-letter topics."""
    config = config or load_config()
    if job == "cdc":
        source = subscription("cdc-{table}") if streaming else f"{BUCKET}/cdc"
        return cdc_request(config, input_url=source, warehouse=WAREHOUSE)
    inputs = (
        {"clickstream": subscription("clickstream-beam"), "orders": subscription("orders-beam")}
        if streaming
        else {"clickstream": f"{BUCKET}/events/clickstream-*.jsonl", "orders": f"{BUCKET}/events/orders-*.jsonl"}
    )
    streams = {"sessions": ("clickstream",), "revenue": ("orders",), "fraud": ("orders",)}.get(
        job, ("clickstream", "orders")
    )
    given = {s: inputs[s] for s in streams}
    return analytics_request(
        job,
        config,
        warehouse=WAREHOUSE,
        alerts_topic=ALERTS,
        dead_letter_topic=DEAD_LETTERS,
        **given if job == "all" else {"input_url": given[streams[0]]},
    )


def dataflow_args(*extra: str, image: str | None = IMAGE) -> list[str]:
    args = [
        "--runner=DataflowRunner",
        f"--project={PROJECT}",
        f"--region={REGION}",
        f"--temp_location={BUCKET}/tmp",
        "--dry_run=True",
        *extra,
    ]
    return args + ([f"--sdk_container_image={image}"] if image else [])


def launcher_arguments(parameters: dict[str, str], job_name: str, launch_id: str, account: str) -> list[str]:
    """What Google's Flex Template launcher passes to the template's ``main.py``: the launch's
    environment as Beam options, ``--template_location`` (the job is written to that object, and
    the service starts it), then the template's parameters as ``--name=value``.

    Taken from a launcher's own log line (``Executing: ... --stagingLocation=gs://dataflow-staging-
    REGION-NUMBER/staging --templateLocation=gs://.../staging/template_launches/JOB_ID/job_object
    --enableStreamingEngine=true --runner=DataflowRunner --labels={...}`` for a Java template) with
    Beam Python's names for the same options; a Python flag takes no value (``--enable_streaming_engine``
    rejects ``=true``), so the launcher passes it bare."""
    staging = f"{BUCKET}/staging"
    return [
        "--runner=DataflowRunner",
        f"--project={PROJECT}",
        f"--region={REGION}",
        f"--job_name={job_name}",
        f"--staging_location={staging}",
        f"--temp_location={BUCKET}/tmp",
        f"--template_location={staging}/template_launches/{launch_id}/job_object",
        f"--sdk_container_image={IMAGE}",
        f"--service_account_email={account}",
        "--max_num_workers=3",
        "--machine_type=n2-standard-2",
        "--enable_streaming_engine",
        '--labels={"team": "data"}',
        *(f"--{name}={value}" for name, value in parameters.items()),
    ]


def dry_run(request: Request, *extra: str, image: str | None = IMAGE) -> Submission:
    """``request`` built for Dataflow with no network; the built job is in ``.job``."""
    with no_network():
        submission = run(request, pipeline_options(request, dataflow_args(*extra, image=image)))
    assert isinstance(submission, Submission) and submission.job_id is None
    return submission


def transforms(submission: Submission) -> dict[str, Any]:
    """unique name -> transform proto of the built job."""
    return named_transforms(submission.job.proto_pipeline)


def named_transforms(pipeline: beam_runner_api_pb2.Pipeline) -> dict[str, Any]:
    """unique name -> transform proto of a pipeline proto."""
    return {t.unique_name: t for t in pipeline.components.transforms.values()}


def pubsub_reads(pipeline: beam_runner_api_pb2.Pipeline) -> list[str]:
    """The subscriptions the job's Pub/Sub reads name (Dataflow runs those reads itself)."""
    return sorted(
        beam_runner_api_pb2.PubSubReadPayload.FromString(t.spec.payload).subscription
        for t in named_transforms(pipeline).values()
        if t.spec.urn == "beam:transform:pubsub_read:v1"
    )


def bigquery_writes(pipeline: beam_runner_api_pb2.Pipeline) -> list[str]:
    """The tables (PROJECT:DATASET.TABLE) the job's BigQuery writes name in their display data."""
    tables = []
    for transform in named_transforms(pipeline).values():
        if transform.spec.urn == "beam:transform:write_to_big_query:v0":
            for item in transform.display_data:
                labelled = beam_runner_api_pb2.LabelledPayload.FromString(item.payload)
                if labelled.key == "table":
                    tables.append(labelled.string_value)
    return sorted(tables)


def staged(submission: Submission) -> dict[str, str]:
    """staged name -> local path of every artifact the workers' environment lists."""
    found = {}
    for environment in submission.job.proto_pipeline.components.environments.values():
        for dependency in environment.dependencies:
            path = beam_runner_api_pb2.ArtifactFilePayload.FromString(dependency.type_payload).path
            name = beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(dependency.role_payload).staged_name
            found[name] = path
    return found


def other_config() -> Config:
    """Every setting a step label once carried, changed."""
    config = load_config()
    return config.__class__(
        **{
            **vars(config),
            "sessions": config.sessions.__class__(timedelta(minutes=45), timedelta(minutes=20), timedelta(minutes=5)),
            "revenue": config.revenue.__class__(timedelta(minutes=3)),
            "fraud": config.fraud.__class__(**{**vars(config.fraud), "rapid_orders_count": 5}),
        }
    )
