"""Each Flex Template launched as Google's launcher launches it: the template's ``main.py`` in the
image's environment, with the launcher's arguments, ``--template_location`` included. Beam then
writes the job to that object instead of submitting it (the service starts it), and the
launcher must exit 0. A local Cloud Storage emulator serves the gs:// objects; any other
network access fails the test. The written job is held to the job: streaming, the image, the
stable step names (those of the same job built in this process), the Pub/Sub reads and the
BigQuery writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from apache_beam.portability.api import beam_runner_api_pb2
from google.cloud import storage as gcs

from beam_pipelines.dataflow.launcher import parse, request_from
from beam_pipelines.dataflow.templates import TEMPLATES as LAUNCHER_TEMPLATES
from tests.support.dataflow import (
    BUCKET,
    IMAGE,
    PROJECT,
    WAREHOUSE,
    bigquery_writes,
    dry_run,
    launcher_arguments,
    named_transforms,
    pubsub_reads,
    subscription,
)
from tests.support.metadata_server import metadata_server
from tests.support.worker import Worker

pytestmark = pytest.mark.slow
OFFLINE_SITE = Path(__file__).parents[1] / "support" / "offline_site"

TEMPLATES = {
    "analytics": (
        "all",
        {
            "job": "all",
            "clickstream": subscription("clickstream-beam"),
            "orders": subscription("orders-beam"),
            "warehouse": WAREHOUSE,
            "alerts_topic": f"projects/{PROJECT}/topics/fraud-alerts",
            "dead_letter_topic": f"projects/{PROJECT}/topics/dead-letter",
        },
    ),
    "cdc": ("cdc", {"input": subscription("cdc-{table}"), "warehouse": WAREHOUSE}),
}


def _object(client: gcs.Client, url: str) -> bytes:
    bucket, _, name = url.removeprefix("gs://").partition("/")
    return client.bucket(bucket).blob(name).download_as_bytes()


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_the_launcher_writes_the_job_to_its_template_location(
    template: str, worker: Worker, storage: str, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", storage)
    client = gcs.Client(project=PROJECT)
    bucket = BUCKET.removeprefix("gs://")
    if client.lookup_bucket(bucket) is None:
        client.create_bucket(bucket)
    job, parameters = TEMPLATES[template]
    launch_id = f"2026-12-07_00_00_00-{template}"
    attempts = tmp_path / "network.log"
    # the launcher VM's credentials (its service account, from its metadata server)
    account = f"streamforge-{'cdc-job' if template == 'cdc' else template}@{PROJECT}.iam.gserviceaccount.com"
    with metadata_server(account, PROJECT) as vm:
        launched = worker.run(
            str(worker.context.folder / "main.py"),
            *launcher_arguments(parameters, f"streamforge-{job}", launch_id, account),
            env={
                **vm,
                "STORAGE_EMULATOR_HOST": storage,
                "PYTHONPATH": str(OFFLINE_SITE),
                "STREAMFORGE_NETWORK_LOG": str(attempts),
            },
            check=False,
        )
    assert launched.returncode == 0, launched.stderr[-4000:]
    location = f"{BUCKET}/staging/template_launches/{launch_id}/job_object"
    assert f"streamforge-{job} written to {location} for Dataflow to start" in launched.stderr
    assert not attempts.exists() or attempts.read_text() == ""

    written = json.loads(_object(client, location))
    options = written["environment"]["sdkPipelineOptions"]["options"]
    assert written["type"] == "JOB_TYPE_STREAMING" and written["name"] == f"streamforge-{job}"
    assert options["sdk_container_image"] == IMAGE and options["streaming"] is True
    assert "enable_streaming_engine" in written["environment"]["experiments"]
    assert written["environment"]["workerPools"][0]["sdkHarnessContainerImages"][0]["containerImage"] == IMAGE
    assert written["labels"] == {"team": "data", "streamforge-job": job}
    pipeline = beam_runner_api_pb2.Pipeline.FromString(_object(client, options["pipelineUrl"]))
    spec = LAUNCHER_TEMPLATES[template]
    built_here = dry_run(request_from(spec, parse(spec, [f"--{k}={v}" for k, v in parameters.items()])[0]))
    built_here = built_here.job.proto_pipeline
    assert set(named_transforms(pipeline)) == set(named_transforms(built_here))  # the stable step names
    assert pubsub_reads(pipeline) == pubsub_reads(built_here) and pubsub_reads(pipeline)
    assert bigquery_writes(pipeline) == bigquery_writes(built_here) and bigquery_writes(pipeline)
    assert all(table.startswith(f"{PROJECT}:analytics.") for table in bigquery_writes(pipeline))
