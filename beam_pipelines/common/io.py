"""Where a job reads and writes: the ``--input`` and ``--warehouse`` URLs, and the readers.

- ``file://PATH``: a local JSONL file (or a glob). Bounded: the job runs in batch mode.
- ``gs://BUCKET/PATH`` (or another Beam filesystem: ``s3://``, ``azfs://``, ``hdfs://``): the
  same, in cloud storage. Nothing is checked at construction (that would need credentials
  and the network); a pattern that matches no file fails the job, saying so.
- ``pubsub://projects/P/subscriptions/S`` or ``pubsub://projects/P/topics/T``: unbounded;
  event time comes from the ``event_time`` attribute the producers set. Reading a topic
  makes Beam create a temporary subscription.
- ``kafka://HOST:PORT[,HOST:PORT]/TOPIC``: unbounded (streaming; locally through the local feed,
  local/feed.py, on Dataflow through Beam's Kafka IO, kafka_io.py); with ``?until=end`` a
  bounded read, from ``start`` to the end offsets when the job starts (batch mode, locally;
  kafka.py). streamforge/kafka.py has the options.
- ``bigquery://PROJECT.DATASET`` or ``duckdb:///ABS/PATH`` (``duckdb://rel/path``): the
  warehouse (see warehouse.py).

Readers yield payloads as bytes, untouched: decoding, validation and dead letters are the
parse step's job. A Pub/Sub reader yields one element per message. A file reader yields
batches (lists) of lines, a Kafka reader batches of ``(payload, encoding, event_id)``: on a bounded input the per-element cost of the runner, not the
work per line, is what limits a job, so lines travel in batches until they are validated
(docs/pipelines.md, "Performance").
"""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from beam_pipelines.common.kafka import ReadKafkaBatches
from beam_pipelines.common.kafka_io import ReadKafkaRecords
from streamforge.kafka import KafkaUrl, KafkaUrlError, parse_kafka_url
from streamforge.naming import BIGQUERY_DATASET

__all__ = [
    "GCS_PATH",
    "KAFKA_INPUT",
    "PUBSUB_INPUT",
    "REMOTE_SCHEMES",
    "InputSpec",
    "ReadLineBatches",
    "ReadMessages",
    "SpecError",
    "WarehouseSpec",
    "kafka_input",
    "parse_input",
    "parse_warehouse",
    "remote_path",
]

#: Beam filesystems besides the local one that an input may name.
REMOTE_SCHEMES = ("gs", "s3", "azfs", "hdfs")
#: The URL forms an input or warehouse may take (also the Flex Templates' parameter regexes).
GCS_PATH = re.compile(r"^gs://[a-z0-9][-a-z0-9_.]{1,220}[a-z0-9]/.+$")
PUBSUB_INPUT = re.compile(
    r"^pubsub://(projects/[a-z][-a-z0-9]{4,28}[a-z0-9]/(subscriptions|topics)/[A-Za-z][-\w.~+%]{2,254})$"
)
KAFKA_INPUT = re.compile(r"^kafka://[A-Za-z0-9\[][-A-Za-z0-9.:,\[\]]*(/[A-Za-z0-9._-]{1,249})?(\?[^\s@]*)?$")


class SpecError(ValueError):
    """An --input or --warehouse value that cannot be used; the message says why."""


@dataclass(frozen=True)
class InputSpec:
    kind: str  # "file", "pubsub" or "kafka"
    location: str  # a local path or glob, a gs://... path or glob; a subscription or topic path; a Kafka topic
    is_subscription: bool = False
    kafka: KafkaUrl | None = None

    @property
    def bounded(self) -> bool:
        return self.kind == "file" or (self.kafka is not None and self.kafka.bounded)

    @property
    def schema_registry(self) -> str | None:
        """A Schema Registry URL for Confluent schema ids the project does not have (Kafka inputs)."""
        return self.kafka.registry if self.kafka is not None else None

    @property
    def local(self) -> bool:
        """A path on this machine's disk (which remote workers cannot read)."""
        return self.kind == "file" and "://" not in self.location

    def __str__(self) -> str:
        if self.kind == "pubsub":
            return f"pubsub://{self.location}"
        if self.kafka is not None:
            return str(self.kafka)
        return f"file://{self.location}" if self.local else self.location


@dataclass(frozen=True)
class WarehouseSpec:
    kind: str  # "bigquery" or "duckdb"
    project: str = ""
    dataset: str = ""
    path: str = ""

    def __str__(self) -> str:
        return f"bigquery://{self.project}.{self.dataset}" if self.kind == "bigquery" else f"duckdb://{self.path}"


def remote_path(url: str, option: str) -> str | None:
    """``url`` if it names a file or glob on a remote Beam filesystem (gs://...), None if it
    is no such URL; SpecError if it looks like one but cannot be."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in REMOTE_SCHEMES:
        return None
    if not rest:
        raise SpecError(f"{option} {url}: no path after {scheme}://")
    if scheme == "gs" and not GCS_PATH.match(url):
        raise SpecError(
            f"{option} {url}: expected gs://BUCKET/PATH (a bucket name of 3-222 lower-case letters, "
            "digits, dashes, underscores and dots, then an object path or glob)"
        )
    try:
        FileSystems.get_filesystem(url)
    except ValueError as exc:
        raise SpecError(f"{option} {url}: {exc}") from None
    return url


def parse_input(
    url: str, option: str = "--input", kafka_topic: str | None = None, kafka_group: str | None = None
) -> InputSpec:
    """An input URL, checked: a local file input must match at least one file (a remote one
    is checked when the job reads it); a Kafka URL without a topic reads ``kafka_topic`` (the
    stream's topic in config.topics), a streaming one without a group reads as ``kafka_group``."""
    if url.startswith("kafka://"):
        return kafka_input(url, option, kafka_topic, kafka_group)
    remote = remote_path(url, option)
    if remote is not None:
        return InputSpec("file", remote)
    if url.startswith("file://"):
        path = url[len("file://") :]
        if not path:
            raise SpecError(f"{option} {url}: no path after file://")
        if not glob.glob(path):
            raise SpecError(f"{option} {url}: no such file")
        if Path(path).is_dir():
            raise SpecError(f"{option} {url}: is a directory; name the JSONL file (only `run all` takes a directory)")
        return InputSpec("file", path)
    if url.startswith("pubsub://"):
        match = PUBSUB_INPUT.match(url)
        if not match:
            raise SpecError(
                f"{option} {url}: expected pubsub://projects/PROJECT/subscriptions/NAME or pubsub://projects/PROJECT/topics/NAME"
            )
        return InputSpec("pubsub", match.group(1), is_subscription=match.group(2) == "subscriptions")
    raise SpecError(
        f"{option} {url}: expected file://PATH, gs://BUCKET/PATH, pubsub://projects/P/subscriptions/S "
        "(or /topics/T) or kafka://HOST:PORT/TOPIC"
    )


def kafka_input(url: str, option: str, default_topic: str | None = None, default_group: str | None = None) -> InputSpec:
    """A Kafka input: ``default_topic`` when the URL names none, ``default_group`` for an
    unbounded read without a group."""
    try:
        kafka = parse_kafka_url(url, option, default_group)
    except KafkaUrlError as exc:
        raise SpecError(str(exc)) from None
    if not kafka.topic:
        if default_topic is None:
            raise SpecError(f"{option} {url}: name the topic (kafka://HOST:PORT/TOPIC)")
        kafka = kafka.with_topic(default_topic)
    return InputSpec("kafka", kafka.topic, kafka=kafka)


def parse_warehouse(url: str) -> WarehouseSpec:
    if url.startswith("duckdb://"):
        path = url[len("duckdb://") :]
        if path in ("", "/") or path.endswith("/"):
            raise SpecError(
                f"--warehouse {url}: expected duckdb:///ABSOLUTE/PATH or duckdb://RELATIVE/PATH of a database file"
            )
        return WarehouseSpec("duckdb", path=path)
    if url.startswith("bigquery://"):
        match = BIGQUERY_DATASET.match(url)
        if not match:
            raise SpecError(f"--warehouse {url}: expected bigquery://PROJECT.DATASET")
        return WarehouseSpec("bigquery", project=match.group(1), dataset=match.group(2))
    raise SpecError(f"--warehouse {url}: expected bigquery://PROJECT.DATASET or duckdb:///PATH")


class _SplitFiles(beam.DoFn):
    """A file pattern -> (path, start, end) byte ranges of every matching file.

    A compressed file cannot be read from the middle, so it is one range. A pattern that
    matches nothing fails the job: an input that is not there is an error, not an empty day."""

    def __init__(self, range_bytes: int):
        self.range_bytes = range_bytes

    def process(self, pattern: str) -> Iterable[tuple[str, int, int]]:
        (match,) = FileSystems.match([pattern])
        if not match.metadata_list:
            raise FileNotFoundError(f"{pattern}: no file matches this input")
        for file in match.metadata_list:
            if CompressionTypes.detect_compression_type(file.path) != CompressionTypes.UNCOMPRESSED:
                yield file.path, 0, -1
                continue
            for start in range(0, max(file.size_in_bytes, 1), self.range_bytes):
                yield file.path, start, min(start + self.range_bytes, file.size_in_bytes)


class _ReadLines(beam.DoFn):
    """(path, start, end) -> lists of at most ``batch`` lines (without the line break).

    A line belongs to the range holding its first byte, so ranges split anywhere read every
    line exactly once: a reader starting mid-file skips the line it lands in (the previous
    range reads it) and reads past ``end`` to finish its last line. Empty lines are kept (they
    are malformed messages, dead-lettered like any other)."""

    def __init__(self, batch: int):
        self.batch = batch

    def process(self, file_range: tuple[str, int, int]) -> Iterable[list[bytes]]:
        path, start, end = file_range
        with FileSystems.open(
            path, compression_type=CompressionTypes.AUTO if end < 0 else CompressionTypes.UNCOMPRESSED
        ) as f:
            position = start
            if start > 0:
                f.seek(start - 1)
                position += len(f.readline()) - 1  # the rest of the line that byte start - 1 is in
            batch: list[bytes] = []
            for line in iter(f.readline, b""):  # (a compressed file reads lines but cannot be iterated)
                if 0 <= end <= position:
                    break
                position += len(line)
                batch.append(line[:-2] if line.endswith(b"\r\n") else line[:-1] if line.endswith(b"\n") else line)
                if len(batch) >= self.batch:
                    yield batch
                    batch = []
            if batch:
                yield batch


class ReadLineBatches(beam.PTransform):
    """The lines of the files matching a pattern (local or gs://), in lists of up to ``batch``.

    Files are read in byte ranges of ``range_bytes``, spread over the workers."""

    def __init__(self, pattern: str, *, batch: int = 10_000, range_bytes: int = 64 << 20):
        super().__init__()
        self.pattern, self.batch, self.range_bytes = pattern, batch, range_bytes

    def expand(self, pbegin):
        return (
            pbegin
            | "File pattern" >> beam.Create([self.pattern])
            | "Split files into ranges" >> beam.ParDo(_SplitFiles(self.range_bytes))
            | "Spread ranges" >> beam.Reshuffle()
            | "Read line batches" >> beam.ParDo(_ReadLines(self.batch))
        )


class ReadMessages(beam.PTransform):
    """The raw payloads of one input: lists of lines (bytes) for a file, lists of message
    items for a bounded Kafka read (planned: kafka.plan_bounded), PubsubMessages for
    Pub/Sub; ``(data, encoding)`` pairs from ``local_feed`` (the local streaming runner's
    Pub/Sub or Kafka read, beam_pipelines/local/feed.py), which also drops redeliveries by id,
    and from an unbounded Kafka read on a remote runner (kafka_io.py)."""

    def __init__(self, spec: InputSpec, *, use_id_label: bool = False, local_feed: Any = None):
        super().__init__()
        self.spec = spec
        self.use_id_label = use_id_label
        self.local_feed = local_feed

    def expand(self, pbegin):
        if self.spec.kind == "file":
            return pbegin | "Read lines" >> ReadLineBatches(self.spec.location)
        if self.spec.kind == "kafka" and self.spec.bounded:
            return pbegin | "Read Kafka" >> ReadKafkaBatches(self.spec.kafka)
        if self.local_feed is not None:
            return self.local_feed.output(self.spec.location)
        if self.spec.kind == "kafka":
            return pbegin | "Read Kafka" >> ReadKafkaRecords(self.spec.kafka)
        where = {"subscription": self.spec.location} if self.spec.is_subscription else {"topic": self.spec.location}
        return pbegin | "Read from Pub/Sub" >> beam.io.ReadFromPubSub(
            **where,
            with_attributes=True,  # the "encoding" attribute says how to decode the data
            timestamp_attribute="event_time",
            # Dataflow drops redeliveries by this attribute; elsewhere the parse step deduplicates.
            id_label="event_id" if self.use_id_label else None,
        )
