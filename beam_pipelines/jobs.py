"""The jobs as one pipeline builder: sessions, revenue, fraud, all three, or cdc.

    Read clickstream -> Parse clickstream -> Sessions -> Write user_sessions
                                          (-> Write clickstream_events, with raw_events)
    Read orders      -> Parse orders      -> Revenue  -> Write revenue_per_minute, revenue_by_category_region
                                          (-> Write order_events, with raw_events)
    (Product catalogue: products changes from CDC -> Revenue, with --catalog)
                                          -> Fraud    -> Write fraud_alerts (+ Publish fraud alerts)
    every dead letter                     -> Write dead letters (+ Publish dead letters)

``all`` builds the three jobs in one pipeline that reads and parses each stream once; ``cdc``
is the CDC job (cdc/pipeline.py). Bounded inputs (files, ``kafka://...?until=end``) run in batch
mode, Pub/Sub and Kafka inputs in streaming mode. What to build comes from requests.py; how it runs, from runner.py.

``local_feed`` is the one switch between the local streaming form and the Dataflow form: on
the local runner a ``PubSubFeed`` or ``KafkaFeed`` (local/feed.py) reads every streaming input
in one root step and drops redeliveries by id, as Pub/Sub's ``id_label`` does on Dataflow;
every step after the read is the same.
"""

from __future__ import annotations

from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from beam_pipelines.cdc.pipeline import CdcJob
from beam_pipelines.common.io import ReadMessages
from beam_pipelines.common.parse import DedupMode, ParseEvents
from beam_pipelines.common.publish import PublishJson
from beam_pipelines.common.warehouse import WriteTable, table_name
from beam_pipelines.fraud.pipeline import FraudAlerts
from beam_pipelines.local.feed import KafkaFeed, PubSubFeed
from beam_pipelines.requests import STREAMS, CdcRequest, JobRequest, Request
from beam_pipelines.revenue.pipeline import ProductCatalog, RevenueWindows
from beam_pipelines.sessions.pipeline import SessionWindows
from streamforge.transport import STREAM_SCHEMAS

__all__ = ["build"]


def _on_dataflow(options: PipelineOptions) -> bool:
    return "dataflow" in str(options.view_as(StandardOptions).runner).lower()


def build(pipeline: beam.Pipeline, request: Request, local_feed: PubSubFeed | KafkaFeed | None = None) -> None:
    """Add ``request``'s job to ``pipeline`` (reading its streams through ``local_feed`` if given)."""
    if local_feed is not None:
        local_feed.read(pipeline)
    if isinstance(request, CdcRequest):
        cdc = request.config.cdc
        pipeline | "CDC" >> CdcJob(
            request.source,
            request.warehouse,
            request.tables,
            cdc.replicas,
            cdc.low_stock_threshold,
            request.config.pipelines.dedup_ttl,
            local_feed,
        )
        return
    _build_analytics(pipeline, request, local_feed)


def _build_analytics(pipeline: beam.Pipeline, request: JobRequest, local_feed: PubSubFeed | KafkaFeed | None) -> None:
    options = pipeline.options or PipelineOptions()
    config, job, streaming = request.config, request.job, request.streaming
    # Redeliveries are dropped before the pipeline by the local feed, and on Dataflow by Pub/Sub's
    # id_label; Kafka on Dataflow has no such label, so the parse step drops them in keyed state.
    pubsub = all(spec.kind == "pubsub" for spec in request.inputs.values())
    id_label = streaming and (local_feed is not None or (_on_dataflow(options) and pubsub))
    dedup = DedupMode.ID_LABEL if id_label else DedupMode.STATE if streaming else DedupMode.GROUP
    sink = {"warehouse": request.warehouse, "streaming": streaming, "pipeline": job}
    dead_letters: list[beam.PCollection] = []

    def write(rows: beam.PCollection, label: str, subject: str) -> None:
        refused = rows | label >> WriteTable(subject=subject, **sink)
        if refused is not None:  # rows BigQuery refused, each a dead letter with BigQuery's reason
            dead_letters.append(refused)

    events: dict[str, Any] = {}
    for stream in STREAMS[job]:
        parsed = (
            pipeline
            | f"Read {stream}" >> ReadMessages(request.inputs[stream], use_id_label=id_label, local_feed=local_feed)
            | f"Parse {stream}"
            >> ParseEvents(
                stream,
                job,
                dedup,
                dedup_ttl=config.pipelines.dedup_ttl,
                max_clock_skew=config.pipelines.max_clock_skew,
                min_event_time=config.pipelines.min_event_time,
                max_event_age=config.pipelines.max_event_age,
                shards=config.pipelines.dedup_shards,
                schema_registry=request.inputs[stream].schema_registry,
            )
        )
        events[stream] = parsed.events
        dead_letters.append(parsed.dead_letters)
        if request.raw_events:
            # Before any window or late-data gate: the batch recomputes the day from every valid event.
            rows = parsed.events if streaming else parsed.events | f"Unbatch {stream}" >> beam.FlatMap(iter)
            subject = STREAM_SCHEMAS[stream]
            write(rows, f"Write {table_name(subject)}", subject)

    margin = config.pipelines.lateness_margin
    if job in ("sessions", "all"):
        rows, late = events["clickstream"] | "Sessions" >> SessionWindows(
            config.sessions.gap,
            config.sessions.allowed_lateness,
            streaming=streaming,
            lateness_margin=margin,
            early_panes=config.sessions.early_panes,
        )
        write(rows, "Write user_sessions", "session_aggregate")
        dead_letters += late
    if job in ("revenue", "all"):
        catalog = None
        if request.catalog is not None:
            catalog, catalog_dead = pipeline | "Product catalogue" >> ProductCatalog(request.catalog, local_feed)
            dead_letters.append(catalog_dead)
        per_minute, by_category_region, late = events["orders"] | "Revenue" >> RevenueWindows(
            config.revenue.allowed_lateness, streaming=streaming, lateness_margin=margin, catalog=catalog
        )
        write(per_minute, "Write revenue_per_minute", "revenue_per_minute")
        write(by_category_region, "Write revenue_by_category_region", "revenue_by_category_region")
        dead_letters += late
    if job in ("fraud", "all"):
        alerts, late = events["orders"] | "Fraud" >> FraudAlerts(config.fraud, streaming=streaming)
        write(alerts, "Write fraud_alerts", "fraud_alert")
        if request.alerts_topic:
            alerts | "Publish fraud alerts" >> PublishJson(
                request.alerts_topic, "fraud_alert", ("alert_id", "alert_type", "user_id")
            )
        dead_letters += late

    all_dead = dead_letters | "All dead letters" >> beam.Flatten()
    all_dead | "Write dead letters" >> WriteTable(subject="dead_letter", **sink)
    if request.dead_letter_topic:
        all_dead | "Publish dead letters" >> PublishJson(
            request.dead_letter_topic, "dead_letter", ("pipeline", "reason")
        )
