"""What to run: a job with its inputs, outputs and settings, built from URLs and checked.

The one place where parameters become a job: ``streamforge run`` and the Flex Template
launcher both call ``analytics_request`` or ``cdc_request`` and hand the result to the
runner (runner.py). A bad value raises ``SpecError`` saying which parameter, what and why.

``remote_problems`` says what a remote runner's workers could not use (a path on this
machine's disk, a DuckDB file): the runner refuses those before it builds anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Mapping

from apache_beam.io.filesystems import FileSystems

from beam_pipelines.cdc.pipeline import CdcInput, parse_cdc_input
from beam_pipelines.common.io import (
    InputSpec,
    SpecError,
    WarehouseSpec,
    kafka_input,
    parse_input,
    parse_warehouse,
    remote_path,
)
from beam_pipelines.common.kafka_io import KafkaOnRunnerError, read_settings
from streamforge.cdc.config import ConfigError, DebeziumServerConfig
from streamforge.cdc.tables import SourceTable, load_source_tables
from streamforge.config import Config, TopicsConfig
from streamforge.kafka import KafkaUrl
from streamforge.naming import consumer_group
from streamforge.transport import STREAM_FILES

__all__ = [
    "ANALYTICS_JOBS",
    "STREAMS",
    "TOPIC",
    "CdcRequest",
    "JobRequest",
    "Request",
    "analytics_request",
    "cdc_request",
    "kafka_inputs",
    "kafka_streams",
    "kafka_urls",
    "pubsub_sources",
    "remote_problems",
    "with_kafka_urls",
]

ANALYTICS_JOBS = ("sessions", "revenue", "fraud", "all")
#: The streams each analytics job reads.
STREAMS = {"sessions": ("clickstream",), "revenue": ("orders",), "fraud": ("orders",), "all": ("clickstream", "orders")}
#: A Pub/Sub topic path (--alerts-topic, --dead-letter-topic).
TOPIC = re.compile(r"^projects/[a-z][-a-z0-9]{4,28}[a-z0-9]/topics/[A-Za-z][-\w.~+%]{2,254}$")


@dataclass(frozen=True)
class JobRequest:
    """An analytics job: sessions, revenue, fraud, or all three in one pipeline."""

    job: str
    inputs: dict[str, InputSpec]  # stream name -> input
    warehouse: WarehouseSpec
    config: Config
    alerts_topic: str | None = None  # projects/P/topics/T
    dead_letter_topic: str | None = None
    catalog: CdcInput | None = None  # the products change stream: revenue by category from the database
    raw_events: bool = False  # also write the valid, deduplicated events (what the daily batch reads)

    def __post_init__(self) -> None:
        if self.job not in ANALYTICS_JOBS:
            raise SpecError(f"unknown job {self.job!r}; choose from {', '.join(ANALYTICS_JOBS)}")
        missing = [s for s in STREAMS[self.job] if s not in self.inputs]
        if missing:
            raise SpecError(f"job {self.job} needs the {' and '.join(missing)} input")
        bounded = {spec.bounded for spec in self.inputs.values()} | ({self.catalog.bounded} if self.catalog else set())
        if len(bounded) > 1:
            raise SpecError(
                "inputs must all be bounded (files, kafka://...?until=end: batch) or all unbounded "
                "(Pub/Sub, Kafka: streaming), not a mix"
            )
        transports = {spec.kind for spec in self.inputs.values()} | ({self.catalog.kind} if self.catalog else set())
        if {"pubsub", "kafka"} <= transports:
            raise SpecError("streaming inputs must all come from Pub/Sub or all from Kafka, not both")
        if self.catalog is not None and self.job not in ("revenue", "all"):
            raise SpecError(f"--catalog is for the revenue job (and all), not {self.job}")

    @property
    def streaming(self) -> bool:
        return not next(iter(self.inputs.values())).bounded


@dataclass(frozen=True)
class CdcRequest:
    """The CDC job: Debezium change events of the captured tables -> changelogs, replicas, events."""

    source: CdcInput
    warehouse: WarehouseSpec
    tables: Mapping[str, SourceTable]  # the captured tables (schema.sql's definitions)
    config: Config
    job: str = "cdc"

    @property
    def streaming(self) -> bool:
        return not self.source.bounded


Request = JobRequest | CdcRequest


def pubsub_sources(request: Request) -> list[tuple[str, str]]:
    """The request's Pub/Sub sources: (option, projects/P/subscriptions/S or .../topics/T)."""
    sources = []
    if isinstance(request, JobRequest):
        sources += [(f"--{stream}", spec.location) for stream, spec in request.inputs.items() if spec.kind == "pubsub"]
        catalog = request.catalog
        if catalog is not None and catalog.kind == "pubsub":
            sources += [("--catalog", location) for _, location in catalog.sources]
    elif request.source.kind == "pubsub":
        sources += [("--input", location) for _, location in request.source.sources]
    return sources


def kafka_urls(request: Request) -> list[KafkaUrl]:
    """Every Kafka input of ``request``: event streams, the catalogue's and CDC's topics."""
    return [url for _, url in kafka_inputs(request)]


def kafka_inputs(request: Request) -> list[tuple[str, KafkaUrl]]:
    """(the option that gave it, URL) of every Kafka input of ``request``."""
    if isinstance(request, CdcRequest):
        return [("--input", url) for url in request.source.kafka]
    option = (lambda stream: "--input") if request.job != "all" else (lambda stream: f"--{stream}")
    found = [(option(stream), spec.kafka) for stream, spec in request.inputs.items() if spec.kafka is not None]
    return found + [("--catalog", url) for url in (request.catalog.kafka if request.catalog is not None else ())]


def with_kafka_urls(request: Request, change: Callable[[KafkaUrl], KafkaUrl]) -> Request:
    """``request`` with each Kafka input's URL replaced by ``change(url)`` (e.g. a planned read)."""

    def cdc_input(source: CdcInput) -> CdcInput:
        return replace(source, kafka=tuple(change(url) for url in source.kafka)) if source.kafka else source

    if isinstance(request, CdcRequest):
        return replace(request, source=cdc_input(request.source))
    inputs = {
        stream: replace(spec, kafka=change(spec.kafka)) if spec.kafka is not None else spec
        for stream, spec in request.inputs.items()
    }
    return replace(request, inputs=inputs, catalog=cdc_input(request.catalog) if request.catalog else None)


def kafka_streams(request: Request) -> dict[str, KafkaUrl]:
    """The request's unbounded Kafka inputs: feed path (the topic) -> URL."""
    return {url.topic: url for url in kafka_urls(request) if not url.bounded}


def _stream_inputs(
    job: str, input_url: str | None, clickstream: str | None, orders: str | None, topics: TopicsConfig
) -> dict[str, InputSpec]:
    """Stream name -> input for ``job`` from --input / --clickstream / --orders; a Kafka URL
    without a topic reads the stream's topic in config.topics."""
    given = {"clickstream": clickstream, "orders": orders}
    needed = STREAMS[job]
    stream_topics = {"clickstream": topics.clickstream, "orders": topics.orders}
    if input_url is not None:
        if job == "all" and input_url.startswith("kafka://"):
            if kafka_input(input_url, "--input", default_topic="").location:  # the URL names a topic
                raise SpecError(
                    f"--input {input_url}: for `run all` give kafka://HOST:PORT without a topic (each "
                    "stream's topic comes from config.topics), or --clickstream and --orders"
                )
            for stream in needed:
                given[stream] = given[stream] or input_url
        elif job == "all":
            for stream in needed:
                given[stream] = given[stream] or _file_in(input_url, STREAM_FILES[stream])
        else:
            (stream,) = needed
            if given[stream] is not None:
                raise SpecError(f"give either --input or --{stream}, not both")
            given[stream] = input_url
    missing = [s for s in needed if given[s] is None]
    if missing:
        raise SpecError(
            f"`run {job}` needs --input"
            + ("" if job != "all" else " DIR")
            + f" (or {' and '.join('--' + s for s in missing)})"
        )
    option = (lambda s: f"--{s}") if job == "all" else (lambda s: "--input")
    return {s: parse_input(given[s], option(s), stream_topics[s], consumer_group(job)) for s in needed}


def _file_in(directory_url: str, name: str) -> str:
    """``name`` in the directory ``directory_url`` (local: it must be one)."""
    if remote_path(directory_url, "--input") is not None:
        return FileSystems.join(directory_url, name)
    if not directory_url.startswith("file://") or not Path(directory_url[len("file://") :]).is_dir():
        raise SpecError(
            f"--input {directory_url}: for `run all` give a directory (file://DIR or gs://BUCKET/DIR "
            f"holding {' and '.join(STREAM_FILES.values())}), or --clickstream and --orders"
        )
    return f"file://{Path(directory_url[len('file://') :]) / name}"


def _topic(option: str, topic: str | None) -> str | None:
    if topic is not None and not TOPIC.match(topic):
        raise SpecError(f"{option} {topic}: expected projects/PROJECT/topics/TOPIC")
    return topic


def _debezium() -> DebeziumServerConfig:
    try:
        return DebeziumServerConfig.load()
    except ConfigError as exc:
        raise SpecError(str(exc)) from None


def analytics_request(
    job: str,
    config: Config,
    *,
    warehouse: str,
    input_url: str | None = None,
    clickstream: str | None = None,
    orders: str | None = None,
    alerts_topic: str | None = None,
    dead_letter_topic: str | None = None,
    catalog: str | None = None,
    raw_events: bool = False,
) -> JobRequest:
    """An analytics job from its URLs: ``input_url`` is a JSONL file, a directory for ``all``
    (local or gs://), or a Pub/Sub subscription or topic; ``catalog`` the products change stream."""
    if job not in ANALYTICS_JOBS:
        raise SpecError(f"unknown job {job!r}; choose from {', '.join(ANALYTICS_JOBS)} (or cdc)")
    inputs = _stream_inputs(job, input_url, clickstream, orders, config.topics)
    catalog_input = None
    if catalog is not None:
        catalog_input = parse_cdc_input(catalog, {"products": _debezium().topic("public.products")}, "--catalog")
    return JobRequest(
        job,
        inputs,
        parse_warehouse(warehouse),
        config,
        _topic("--alerts-topic", alerts_topic),
        _topic("--dead-letter-topic", dead_letter_topic),
        catalog_input,
        raw_events,
    )


def cdc_request(config: Config, *, input_url: str | None, warehouse: str) -> CdcRequest:
    """The CDC job over the tables the Debezium properties capture, typed by schema.sql."""
    if input_url is None:
        raise SpecError(
            "`run cdc` needs --input (file://DIR or gs://BUCKET/DIR of `cdc run` files, "
            "pubsub://projects/P/subscriptions/NAME with {table} in NAME, or kafka://HOST:PORT[?until=end])"
        )
    debezium = _debezium()
    tables = load_source_tables()
    captured = {qualified.split(".", 1)[-1]: debezium.topic(qualified) for qualified in debezium.tables}
    unknown = sorted(set(captured) - set(tables))
    if unknown:
        raise SpecError(f"{debezium.path} captures {', '.join(unknown)}, which schema.sql does not define")
    source = parse_cdc_input(input_url, captured)
    return CdcRequest(source, parse_warehouse(warehouse), {t: tables[t] for t in captured}, config)


def remote_problems(request: Request) -> list[str]:
    """What the workers of a remote runner could not use, each said precisely."""
    problems = []
    inputs = request.inputs.items() if isinstance(request, JobRequest) else [("input", request.source)]
    for name, spec in inputs:
        option = "--input" if isinstance(request, CdcRequest) or request.job != "all" else f"--{name}"
        if spec.local:
            problems.append(
                f"{option} {spec}: a path on this machine, which the workers cannot read; copy it to "
                "Cloud Storage (gcloud storage cp) and give gs://BUCKET/PATH"
            )
    refused: set[str] = set()
    for option, url in kafka_inputs(request):
        try:
            read_settings(url)
        except KafkaOnRunnerError as exc:
            if option not in refused:  # CDC's topics share one URL, and so its problem
                refused.add(option)
                problems.append(f"{option} {exc}")
    if isinstance(request, JobRequest) and request.catalog is not None and request.catalog.local:
        problems.append(
            f"--catalog {request.catalog}: a path on this machine, which the workers cannot read; "
            "give gs://BUCKET/DIR or pubsub://projects/P/subscriptions/S"
        )
    if request.warehouse.kind == "duckdb":
        problems.append(
            f"--warehouse {request.warehouse}: a DuckDB file would be written on the workers' disks "
            "and lost; give bigquery://PROJECT.DATASET"
        )
    return problems
