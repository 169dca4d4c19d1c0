"""Every job built for Dataflow with the DataflowRunner's own dry run, offline: batch from
Cloud Storage and streaming from Pub/Sub into BigQuery, with the alert and dead-letter topics.
What Dataflow would get is checked on the built job (pipeline proto and v1b3 job request)."""

from __future__ import annotations

import pytest
from apache_beam.options.pipeline_options import DebugOptions, GoogleCloudOptions, SetupOptions, StandardOptions
from apache_beam.portability.api import beam_runner_api_pb2

from beam_pipelines.common.io import SpecError
from beam_pipelines.requests import analytics_request, cdc_request
from beam_pipelines.runner import pipeline_options, submit
from streamforge.config import load_config
from tests.support.cli import run_entry_point
from tests.support.dataflow import (
    BUCKET,
    IMAGE,
    JOBS,
    WAREHOUSE,
    dataflow_args,
    dry_run,
    other_config,
    request_for,
    staged,
    subscription,
    transforms,
)

pytestmark = pytest.mark.slow
STREAMING = 2  # dataflow.JobType.JOB_TYPE_STREAMING


@pytest.mark.parametrize("streaming", [False, True], ids=["batch-gcs", "streaming-pubsub"])
@pytest.mark.parametrize("job", JOBS)
def test_every_job_builds_for_dataflow_offline(job: str, streaming: bool) -> None:
    submission = dry_run(request_for(job, streaming))
    built = transforms(submission)
    options = submission.job.options
    assert submission.name == f"streamforge-{job}" and submission.job.proto.name == f"streamforge-{job}"
    assert (submission.job.proto.type_ == STREAMING) == streaming == options.view_as(StandardOptions).streaming
    assert options.view_as(GoogleCloudOptions).labels == [f"streamforge-job={job}"]
    assert not options.view_as(SetupOptions).save_main_session
    if streaming:
        assert {"enable_streaming_engine", "use_runner_v2"} <= set(options.view_as(DebugOptions).experiments)
    # the workers run the image, and nothing else is staged: no pickled main session, no package
    assert set(staged(submission)) == {"submission_environment_dependencies.txt"}
    (environment,) = submission.job.proto_pipeline.components.environments.values()
    assert beam_runner_api_pb2.DockerPayload.FromString(environment.payload).container_image == IMAGE
    # BigQuery: streaming inserts in streaming, load jobs in batch, pure Python either way
    writes = [name for name, t in built.items() if t.spec.urn == "beam:transform:write_to_big_query:v0"]
    assert writes
    for name in writes:
        assert (f"{name}/_StreamToBigQuery" in built) == streaming
        assert (f"{name}/BigQueryBatchFileLoads" in built) == (not streaming)
    assert not [name for name, t in built.items() if "external" in t.spec.urn or "expansion" in t.spec.urn]
    if job != "cdc":
        assert any(name.startswith("Write dead letters") for name in built)
        assert ("Publish fraud alerts/Publish JSON" in built) == (job in ("fraud", "all"))
        assert "Publish dead letters/Publish JSON" in built


@pytest.mark.parametrize("job", ["all", "cdc"])
def test_pubsub_reads_carry_event_time_and_drop_redeliveries(job: str) -> None:
    submission = dry_run(request_for(job, True))
    reads = [
        beam_runner_api_pb2.PubSubReadPayload.FromString(t.spec.payload)
        for t in transforms(submission).values()
        if t.spec.urn == "beam:transform:pubsub_read:v1"
    ]
    if job == "all":  # events: event time and Dataflow's dedup by the producers' attributes
        assert sorted(r.subscription for r in reads) == [
            "projects/my-proj-123/subscriptions/clickstream-beam",
            "projects/my-proj-123/subscriptions/orders-beam",
        ]
        assert {(r.timestamp_attribute, r.id_attribute, r.with_attributes) for r in reads} == {
            ("event_time", "event_id", True)
        }
        assert not [n for n in transforms(submission) if "Drop duplicates" in n]  # id_label does it on Dataflow
    else:  # Debezium Server sets no attribute: one read per table, then dedup by (table, key, LSN) in state
        assert len(reads) == 5 and all(
            r.subscription.startswith("projects/my-proj-123/subscriptions/cdc-") for r in reads
        )
        assert "CDC/Drop redeliveries/Remember for the TTL" in transforms(submission)


@pytest.mark.parametrize("streaming", [False, True], ids=["batch", "streaming"])
def test_step_names_do_not_depend_on_the_settings(streaming: bool) -> None:
    """--update matches steps by name: the same names whatever the gap, lateness or thresholds."""
    default = set(transforms(dry_run(request_for("all", streaming))))
    changed = set(transforms(dry_run(request_for("all", streaming, other_config()))))
    assert default == changed
    assert "Sessions/Session windows" in default or "Sessions/Sessions per user" in default


def test_update_carries_the_renamed_steps() -> None:
    request = request_for("all", True)
    options = pipeline_options(request, dataflow_args("--update"))
    mapping = options.view_as(GoogleCloudOptions).transform_name_mapping
    assert mapping == {"Sessions/Session windows (30m gap)": "Sessions/Session windows"}
    built = set(transforms(dry_run(request)))
    assert all(new in built for new in mapping.values()) and not any(old in built for old in mapping)
    given = pipeline_options(request, dataflow_args("--update", '--transform_name_mapping={"a":"b"}'))
    assert given.view_as(GoogleCloudOptions).transform_name_mapping == {"a": "b"}  # the user's own wins


def test_without_an_image_the_package_and_its_pins_are_staged() -> None:
    submission = dry_run(request_for("fraud", False), image=None)
    files = staged(submission)
    assert {"streamforge-0.1.0-py3-none-any.whl", "requirements.txt", "extra_packages.txt"} <= set(files)
    assert "pickled_main_session" not in files
    (environment,) = submission.job.proto_pipeline.components.environments.values()
    assert beam_runner_api_pb2.DockerPayload.FromString(environment.payload).container_image.startswith(
        "gcr.io/cloud-dataflow/v1beta3/beam_python3.11_sdk:2.77.0"
    )


@pytest.mark.parametrize(
    "given, problem",
    [
        ({"input_url": "file://{run}/orders.jsonl"}, "--input file://{run}/orders.jsonl: a path on this machine"),
        (
            {"input_url": f"{BUCKET}/orders.jsonl", "warehouse": "duckdb://out/w.duckdb"},
            "--warehouse duckdb://out/w.duckdb: a DuckDB file would be written on the workers' disks",
        ),
        (
            {"input_url": f"{BUCKET}/orders.jsonl", "catalog": "file://{cdc}"},
            "--catalog file://{cdc}/cdc.public.products.jsonl: a path on this machine",
        ),
    ],
)
def test_what_workers_cannot_use_is_refused_before_building(default_run, tmp_path, given: dict, problem: str) -> None:
    (tmp_path / "cdc").mkdir()
    (tmp_path / "cdc" / "cdc.public.products.jsonl").write_text("null\n")
    values = {k: v.format(run=default_run, cdc=tmp_path / "cdc") for k, v in given.items()}
    request = analytics_request("revenue", load_config(), **{"warehouse": WAREHOUSE, **values})
    with pytest.raises(SpecError) as refused:
        submit(request, pipeline_options(request, dataflow_args()))
    assert problem.format(run=default_run, cdc=tmp_path / "cdc") in str(refused.value)


def test_cdc_from_local_files_is_refused_for_dataflow(tmp_path) -> None:
    (tmp_path / "cdc.public.orders.jsonl").write_text("null\n")
    request = cdc_request(load_config(), input_url=f"file://{tmp_path}", warehouse=WAREHOUSE)
    with pytest.raises(SpecError, match="a path on this machine, which the workers cannot read"):
        submit(request, pipeline_options(request, dataflow_args()))


def test_gcs_inputs_are_paths_the_job_reads_and_bad_ones_are_refused() -> None:
    request = analytics_request("all", load_config(), warehouse=WAREHOUSE, input_url=f"{BUCKET}/day-1")
    assert {s: str(spec) for s, spec in request.inputs.items()} == {
        "clickstream": f"{BUCKET}/day-1/clickstream.jsonl",
        "orders": f"{BUCKET}/day-1/orders.jsonl",
    }
    cdc = cdc_request(load_config(), input_url=f"{BUCKET}/cdc", warehouse=WAREHOUSE)
    assert cdc.source.sources == (("*", f"{BUCKET}/cdc/cdc.public.*.jsonl"),)
    with pytest.raises(SpecError, match="expected gs://BUCKET/PATH"):
        analytics_request("fraud", load_config(), warehouse=WAREHOUSE, input_url="gs://X/orders.jsonl")
    with pytest.raises(SpecError, match="expected pubsub://projects/P/subscriptions/NAME with {table}"):
        cdc_request(load_config(), input_url=subscription("cdc"), warehouse=WAREHOUSE)


def test_the_readme_command_builds_the_job_and_exits_0() -> None:
    """`streamforge run ... --runner DataflowRunner` as a process, without an image (the package is
    staged), in dry-run mode: exit 0 and what was built (no metrics call after a dry run)."""
    done = run_entry_point(
        "run", "all", "--input", f"{BUCKET}/events", "--warehouse", WAREHOUSE, *dataflow_args(image=None), timeout=300
    )
    assert "dry run: streamforge-all (batch) built" in done.stderr and "nothing submitted" in done.stderr
