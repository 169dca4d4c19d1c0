"""Kafka on Dataflow (and any remote runner): Beam's Kafka IO, a Java cross-language transform.

Locally, Kafka is read natively (kafka.py, local/feed.py). A remote runner's workers read it
with Beam's ``ReadFromKafka``, which expands through Beam's Java IO expansion service when the
pipeline is built: the launcher starts that jar with Java. ``expansion_service`` finds it:

1. Beam's own override, ``--beam_services='{"sdks:java:io:expansion-service:shadowJar": X}'``
   (or ``BEAM_SERVICE_OVERRIDES``), X being a running service's HOST:PORT or a jar's path;
2. the jar the Dataflow image carries (``IMAGE_JAR_DIR``; the image's build fetches it with
   ``python -m beam_pipelines.common.kafka_io DIR``, so launching never downloads);
3. else Beam's default: its jar cache, or a download from Beam's Maven repository.

What the read gives the parse step is what the local feed gives: ``(payload, encoding)``,
the encoding from the ``encoding`` header (kafka.message_item's rule). Event time: the
watermark follows the messages' Kafka timestamps (``CreateTime``; StreamForge's producers set
it to the event time), and the parse step stamps each event with its own ``event_time``.
Offsets are committed by the runner when it finalizes a checkpoint (``commit_offset_in_finalize``,
with the URL's group). Dedup: Kafka has no ``id_label``, so the job drops repeats by event_id
in keyed state (parse.DedupMode.STATE), as on other runners.

Security: the consumer settings travel in the job graph (the expansion payload), which the
Dataflow console and API show, so nothing secret may be in them. ``consumer_config`` refuses
SASL (its password would be there) and a local CA file (the workers do not have it); TLS with
the JVM's trusted CAs (``security=ssl``) and plaintext inside the VPC work.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Iterable

import apache_beam as beam
from apache_beam.io.kafka import ReadFromKafka
from apache_beam.options.pipeline_options import CrossLanguageOptions, PipelineOptions
from apache_beam.transforms.external import BeamJarExpansionService, JavaJarExpansionService
from apache_beam.utils.subprocess_server import JavaJarServer

from beam_pipelines.common.kafka import DISCOVER_EVERY_S, item_of
from streamforge.kafka import KafkaUrl

__all__ = [
    "EXPANSION_SERVICE",
    "IMAGE_JAR_DIR",
    "KafkaOnRunnerError",
    "ReadKafkaRecords",
    "consumer_config",
    "expansion_jar_name",
    "expansion_service",
    "fetch_expansion_jar",
    "read_settings",
]

#: Beam's name (a Gradle target) for the Java IO expansion service; also the --beam_services key.
EXPANSION_SERVICE = "sdks:java:io:expansion-service:shadowJar"
#: Where the Dataflow image keeps the expansion service's jar (dataflow/Dockerfile).
IMAGE_JAR_DIR = "/opt/streamforge/jars"


class KafkaOnRunnerError(ValueError):
    """A Kafka input a remote runner's workers could not read as given; the message says why."""


def expansion_jar_name() -> str:
    """The expansion service jar of the installed Beam, e.g. beam-sdks-java-io-expansion-service-2.77.0.jar."""
    return os.path.basename(JavaJarServer.path_to_beam_jar(EXPANSION_SERVICE))


def fetch_expansion_jar(directory: Path) -> Path:
    """Download the installed Beam's expansion service jar into ``directory`` (the image's
    build runs this; Beam's own download, from Beam's repository)."""
    directory.mkdir(parents=True, exist_ok=True)
    return Path(JavaJarServer.local_jar(JavaJarServer.path_to_beam_jar(EXPANSION_SERVICE), cache_dir=str(directory)))


def expansion_service(options: PipelineOptions, image_jar_dir: str = IMAGE_JAR_DIR) -> JavaJarExpansionService:
    """The expansion service for Beam's Kafka IO (module docstring: override, image, Beam's default)."""
    override = (options.view_as(CrossLanguageOptions).beam_services or {}).get(EXPANSION_SERVICE)
    if override:
        return JavaJarExpansionService(override)
    in_image = Path(image_jar_dir) / expansion_jar_name()
    if in_image.is_file():
        return JavaJarExpansionService(str(in_image))
    return BeamJarExpansionService(EXPANSION_SERVICE)


def consumer_config(url: KafkaUrl) -> dict[str, str]:
    """The Java consumer's settings for ``url`` (they go into the job graph: nothing secret)."""
    if url.security.startswith("sasl"):
        raise KafkaOnRunnerError(
            f"{url}: security={url.security} on a remote runner would put the SASL password into the job graph "
            "(Beam's Kafka IO takes credentials in its consumer settings, which the Dataflow console and API show); "
            "read this broker with plaintext or TLS from inside its network, or run the job on this machine"
        )
    if url.ca:
        raise KafkaOnRunnerError(
            f"{url}: ca={url.ca} is a file on this machine, which the workers do not have; on a "
            "remote runner TLS uses the JVM's trusted CAs (leave ca out)"
        )
    config = {
        "bootstrap.servers": url.bootstrap,
        "security.protocol": url.security.upper(),
        "auto.offset.reset": "latest" if url.start == "latest" else "earliest",
    }
    if url.group:
        config["group.id"] = url.group
    return config


def read_settings(url: KafkaUrl, now_ms: int | None = None) -> dict[str, Any]:
    """``ReadFromKafka``'s arguments for ``url`` (besides the expansion service).

    Where it starts: ``committed`` from the group's offsets (earliest where it has none);
    ``earliest``, ``latest`` and a time as a start time (0, now, the time), which Kafka IO
    applies whatever the group committed, as the local reader does."""
    if url.bounded:
        raise KafkaOnRunnerError(
            f"{url}: until=end (a bounded read) runs on this machine's runner; on a remote "
            "runner read the topic streaming (without until=end)"
        )
    start_ms = {"committed": None, "earliest": 0, "latest": int(time.time() * 1000) if now_ms is None else now_ms}.get(
        url.start
    )
    if url.start not in ("committed", "earliest", "latest"):
        start_ms = int(url.start_time.timestamp() * 1000)
    if url.start == "earliest" and not url.group:
        start_ms = None  # without a group there is nothing to skip: auto.offset.reset says earliest
    return {
        "consumer_config": consumer_config(url),
        "topics": [url.topic],
        "with_metadata": True,  # the headers: encoding, event_id
        "timestamp_policy": ReadFromKafka.create_time_policy,
        "start_read_time": start_ms,
        "commit_offset_in_finalize": url.group is not None,
        "dynamic_read_poll_interval_seconds": int(DISCOVER_EVERY_S),  # new partitions are read as they appear
    }


def record_item(record: Any) -> tuple[bytes, str]:
    """A Kafka IO record (a Row with value and headers) -> ``(payload, encoding)``."""
    headers: Iterable[Any] = record.headers or ()
    payload, encoding, _event_id = item_of(record.value, ((h.key, h.value) for h in headers))
    return payload, encoding


class ReadKafkaRecords(beam.PTransform):
    """An unbounded Kafka topic on a remote runner -> ``(payload, encoding)`` per message, as
    the local feed hands them over (a tombstone's missing value is ``b""``)."""

    def __init__(self, url: KafkaUrl):
        super().__init__()
        self.url = url
        self.settings = read_settings(url)  # checked when the job is built, before any expansion

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        service = expansion_service(pbegin.pipeline.options or PipelineOptions())
        return (
            pbegin
            | "Read from Kafka" >> ReadFromKafka(**self.settings, expansion_service=service)
            | "Payload and encoding" >> beam.Map(record_item)
        )


if __name__ == "__main__":  # the image's build: python -m beam_pipelines.common.kafka_io DIR
    print(fetch_expansion_jar(Path(sys.argv[1] if len(sys.argv) > 1 else IMAGE_JAR_DIR)))
