"""Kafka inputs built for Dataflow, offline: Beam's Kafka IO expanded by a stand-in of its Java
expansion service (a real gRPC server on 127.0.0.1; the jar cannot be fetched here), then the
DataflowRunner's dry run. What Kafka IO would be asked to do is read back from the expansion
requests; what Dataflow would run, from the built job."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.io.kafka import ReadFromKafka
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.portability.api import beam_runner_api_pb2

from beam_pipelines.common.io import SpecError
from beam_pipelines.common.kafka_io import EXPANSION_SERVICE, IMAGE_JAR_DIR, expansion_jar_name, expansion_service
from beam_pipelines.dataflow import launcher
from beam_pipelines.dataflow.image import build_args
from beam_pipelines.requests import analytics_request, cdc_request
from beam_pipelines.runner import pipeline_options, submit
from streamforge.cdc.config import DebeziumServerConfig
from streamforge.config import load_config
from streamforge.packaging import REPO_ROOT
from tests.support.dataflow import IMAGE, WAREHOUSE, dataflow_args, dry_run, transforms
from tests.support.expansion_service import JAVA_IMAGE, StandInExpansionService, read_config
from tests.support.network import no_network

pytestmark = pytest.mark.slow
STREAMING = 2  # dataflow.JobType.JOB_TYPE_STREAMING
BROKERS = "broker-1.shop.internal:9092,broker-2.shop.internal:9092"


@pytest.fixture
def service():
    with StandInExpansionService() as stand_in:
        yield stand_in


def overrides(service: StandInExpansionService) -> str:
    return f"--beam_services={json.dumps({EXPANSION_SERVICE: service.address})}"


def environments_of(submission) -> dict[str, str]:
    """environment id -> container image of the built job."""
    return {
        env_id: beam_runner_api_pb2.DockerPayload.FromString(env.payload).container_image
        for env_id, env in submission.job.proto_pipeline.components.environments.items()
    }


def test_streaming_from_kafka_builds_for_dataflow(service) -> None:
    config = load_config()
    request = analytics_request("all", config, warehouse=WAREHOUSE, input_url=f"kafka://{BROKERS}")
    submission = dry_run(request, overrides(service))
    assert submission.streaming and submission.job.proto.type_ == STREAMING

    # Kafka IO is asked for each stream's topic, raw bytes with metadata (the headers), event time
    # from Kafka timestamps, offsets committed by the runner for the job's group, partitions discovered
    asked = {tuple(read_config(r)["topics"]): (r.transform.spec.urn, read_config(r)) for r in service.requests}
    assert set(asked) == {(config.topics.clickstream,), (config.topics.orders,)}
    for urn, read in asked.values():
        assert urn == ReadFromKafka.URN_WITH_METADATA
        assert read["consumer_config"] == {
            "bootstrap.servers": BROKERS,
            "group.id": "streamforge-all",
            "auto.offset.reset": "earliest",
            "security.protocol": "PLAINTEXT",
        }
        assert read["key_deserializer"] == read["value_deserializer"] == ReadFromKafka.byte_array_deserializer
        assert read["timestamp_policy"] == "CreateTime" and read["commit_offset_in_finalize"] is True
        assert read["start_read_time"] is None  # the group's committed offsets
        assert read["dynamic_read_poll_interval_seconds"] == 30 and read["max_num_records"] is None

    # the built job: the Java read in its Java environment, then our steps in the image, with
    # dedup by event_id in keyed state (Kafka has no id_label), and no Pub/Sub read
    built = transforms(submission)
    environments = environments_of(submission)
    kafka_reads = {name: t for name, t in built.items() if t.spec.urn == ReadFromKafka.URN_WITH_METADATA}
    assert set(kafka_reads) == {"Read clickstream/Read Kafka/Read from Kafka", "Read orders/Read Kafka/Read from Kafka"}
    assert {environments[t.environment_id] for t in kafka_reads.values()} == {JAVA_IMAGE}
    assert environments[built["Read orders/Read Kafka/Payload and encoding"].environment_id] == IMAGE
    assert "Parse clickstream/Drop duplicates/Remember for the TTL" in built
    assert "Parse orders/Drop duplicates/Remember for the TTL" in built
    assert not [t for t in built.values() if t.spec.urn == "beam:transform:pubsub_read:v1"]
    assert "Write fraud_alerts/Write to BigQuery" in built


def test_a_start_time_and_latest_become_kafka_io_start_times(service) -> None:
    at = "2026-12-01T06:30:00Z"
    request = analytics_request(
        "fraud", load_config(), warehouse=WAREHOUSE, input_url=f"kafka://{BROKERS}/orders?group=fraud-replay&start={at}"
    )
    dry_run(request, overrides(service))
    (asked,) = [read_config(r) for r in service.requests]
    assert asked["start_read_time"] == int(datetime(2026, 12, 1, 6, 30, tzinfo=timezone.utc).timestamp() * 1000)
    assert asked["consumer_config"]["group.id"] == "fraud-replay"

    before = datetime.now(timezone.utc).timestamp() * 1000
    latest = analytics_request(
        "fraud", load_config(), warehouse=WAREHOUSE, input_url=f"kafka://{BROKERS}/orders?start=latest"
    )
    dry_run(latest, overrides(service))
    asked = read_config(service.requests[-1])
    assert before <= asked["start_read_time"] <= datetime.now(timezone.utc).timestamp() * 1000  # whatever was committed
    assert asked["consumer_config"]["auto.offset.reset"] == "latest"


def test_cdc_from_kafka_builds_for_dataflow(service) -> None:
    request = cdc_request(load_config(), input_url=f"kafka://{BROKERS}", warehouse=WAREHOUSE)
    submission = dry_run(request, overrides(service))
    debezium = DebeziumServerConfig.load()
    assert sorted(topic for r in service.requests for topic in read_config(r)["topics"]) == sorted(
        debezium.topic(table) for table in debezium.tables
    )
    assert {read_config(r)["consumer_config"]["group.id"] for r in service.requests} == {"streamforge-cdc"}
    built = transforms(submission)
    assert len([t for t in built.values() if t.spec.urn == ReadFromKafka.URN_WITH_METADATA]) == len(debezium.tables)
    assert "CDC/Drop redeliveries/Remember for the TTL" in built


def test_the_launcher_builds_a_kafka_job_from_template_parameters(service) -> None:
    with no_network():
        launched = launcher.launch(
            [
                "--job=sessions",
                f"--input=kafka://{BROKERS}/clicks-eu",
                f"--warehouse={WAREHOUSE}",
                *dataflow_args(overrides(service)),
            ]
        )
    assert launched.streaming and "Read clickstream/Read Kafka/Read from Kafka" in transforms(launched)
    assert [read_config(r)["topics"] for r in service.requests] == [["clicks-eu"]]


@pytest.mark.parametrize(
    "url, problem",
    [
        (f"kafka://{BROKERS}/orders?until=end", "until=end (a bounded read) runs on this machine's runner"),
        (f"kafka://{BROKERS}/orders?security=sasl_ssl", "would put the SASL password into the job graph"),
        (
            f"kafka://{BROKERS}/orders?security=ssl&ca=/etc/kafka/ca.pem",
            "ca=/etc/kafka/ca.pem is a file on this machine",
        ),
    ],
)
def test_what_kafka_io_on_workers_cannot_do_is_refused_before_building(
    service, monkeypatch, url: str, problem: str
) -> None:
    monkeypatch.setenv("STREAMFORGE_KAFKA_USERNAME", "shop")
    monkeypatch.setenv("STREAMFORGE_KAFKA_PASSWORD", "hunter2-secret")
    request = analytics_request("revenue", load_config(), warehouse=WAREHOUSE, input_url=url)
    with pytest.raises(SpecError) as refused, no_network():
        submit(request, pipeline_options(request, dataflow_args(overrides(service))))
    assert problem in str(refused.value) and "hunter2" not in str(refused.value)
    assert not service.requests  # refused before any expansion


def test_cdc_over_sasl_is_refused_once_for_all_its_topics(service, monkeypatch) -> None:
    monkeypatch.setenv("STREAMFORGE_KAFKA_USERNAME", "shop")
    monkeypatch.setenv("STREAMFORGE_KAFKA_PASSWORD", "hunter2-secret")
    request = cdc_request(load_config(), input_url=f"kafka://{BROKERS}?security=sasl_ssl", warehouse=WAREHOUSE)
    with pytest.raises(SpecError) as refused, no_network():
        submit(request, pipeline_options(request, dataflow_args(overrides(service))))
    assert str(refused.value).count("--input kafka://") == 1 and "SASL password" in str(refused.value)


def test_the_expansion_service_is_the_override_else_the_images_jar(tmp_path: Path) -> None:
    assert expansion_jar_name() == f"beam-sdks-java-io-expansion-service-{beam.__version__}.jar"
    overridden = expansion_service(
        PipelineOptions([f"--beam_services={json.dumps({EXPANSION_SERVICE: '127.0.0.1:8097'})}"]),
        image_jar_dir=str(tmp_path),
    )
    assert overridden.is_existing_service() and overridden.path_to_jar == "127.0.0.1:8097"
    jar = tmp_path / expansion_jar_name()
    jar.write_bytes(b"PK")  # what the image's build fetched
    in_image = expansion_service(PipelineOptions([]), image_jar_dir=str(tmp_path))
    assert in_image.path_to_jar == str(jar) and not in_image.is_existing_service()


def test_the_image_fetches_the_jar_where_the_launcher_looks() -> None:
    dockerfile = (REPO_ROOT / "dataflow" / "Dockerfile").read_text(encoding="utf-8")
    args = build_args({"apache-beam": beam.__version__})
    assert set(re.findall(r"^\s*ARG (\w+)\s*$", dockerfile, re.MULTILINE)) == set(args)  # none without a value
    assert args["KAFKA_JAR_DIR"] == IMAGE_JAR_DIR
    assert 'RUN python -m beam_pipelines.common.kafka_io "${KAFKA_JAR_DIR}"' in dockerfile
    assert "openjdk-17-jre-headless" in dockerfile  # Java for the launcher's expansion
