"""The analytics jobs as one pipeline builder: sessions, revenue, fraud, or all three.

    Read clickstream -> Parse clickstream -> Sessions -> Write user_sessions
                                          (-> Write clickstream_events, with raw_events)
    Read orders      -> Parse orders      -> Revenue  -> Write revenue_per_minute, revenue_by_category_region
                                          (-> Write order_events, with raw_events)
    (Product catalogue: products changes from CDC -> Revenue, with --catalog)
                                          -> Fraud    -> Write fraud_alerts (+ Publish fraud alerts)
    every dead letter                     -> Write dead letters (+ Publish dead letters)

``all`` builds the three jobs in one pipeline that reads and parses each stream once.
Bounded (file) inputs run in batch mode, Pub/Sub inputs in streaming mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from beam_pipelines.common.io import InputSpec, ReadMessages, SpecError, WarehouseSpec
from beam_pipelines.common.parse import DedupMode, ParseEvents
from beam_pipelines.common.publish import PublishJson
from beam_pipelines.common.warehouse import WriteTable, table_name
from beam_pipelines.fraud.pipeline import FraudAlerts
from beam_pipelines.cdc.pipeline import CdcInput
from beam_pipelines.revenue.pipeline import ProductCatalog, RevenueWindows
from beam_pipelines.sessions.pipeline import SessionWindows
from streamforge.config import Config
from streamforge.transport import STREAM_SCHEMAS

__all__ = ["JOBS", "JobReport", "JobRequest", "build", "collect_counters", "pipeline_options", "run_job", "run_pipeline", "tune_local_runner"]

JOBS = ("sessions", "revenue", "fraud", "all")
#: The streams each job reads.
STREAMS = {"sessions": ("clickstream",), "revenue": ("orders",), "fraud": ("orders",), "all": ("clickstream", "orders")}
LOCAL_BATCH_RUNNER = "FnApiRunner"  # the DirectRunner's batch engine, named so it skips the Prism download
LOCAL_STREAMING_RUNNER = "DirectRunner"


@dataclass(frozen=True)
class JobRequest:
    job: str
    inputs: dict[str, InputSpec]  # stream name -> input
    warehouse: WarehouseSpec
    config: Config
    alerts_topic: str | None = None  # projects/P/topics/T
    dead_letter_topic: str | None = None
    catalog: CdcInput | None = None  # the products change stream: revenue by category from the database
    raw_events: bool = False  # also write the valid, deduplicated events (what the daily batch reads)

    def __post_init__(self) -> None:
        if self.job not in JOBS:
            raise SpecError(f"unknown job {self.job!r}; choose from {', '.join(JOBS)}")
        missing = [s for s in STREAMS[self.job] if s not in self.inputs]
        if missing:
            raise SpecError(f"job {self.job} needs the {' and '.join(missing)} input")
        bounded = {spec.bounded for spec in self.inputs.values()} | ({self.catalog.bounded} if self.catalog else set())
        if len(bounded) > 1:
            raise SpecError("inputs must all be files (batch) or all Pub/Sub (streaming), not a mix")
        if self.catalog is not None and self.job not in ("revenue", "all"):
            raise SpecError(f"--catalog is for the revenue job (and all), not {self.job}")

    @property
    def streaming(self) -> bool:
        return not next(iter(self.inputs.values())).bounded


def tune_local_runner() -> None:
    """Tune this process for Beam's in-process runner (docs/pipelines.md, "Performance").

    - Disable the runner's user-state cache. The FnApiRunner's embedded worker always builds
      a 100 MB state cache (ignoring --max_cache_memory_usage_mb), and the cache sizes every
      entry with objsize, which walks the globals of every loaded module: with Beam and the
      GCP clients loaded that is about 1 ms per state write, so a stateful DoFn managed 500
      events/s. Without the cache: 10k/s.
    - Collect garbage less often. The runner keeps whole stages' data in memory, and the
      default thresholds run a collection every 700 new containers, each walking that
      heap: a quarter of a batch job's time went there.
    """
    import gc

    from apache_beam.runners.portability.fn_api_runner import worker_handlers

    worker_handlers.STATE_CACHE_SIZE_MB = 0
    gc.set_threshold(200_000, 20, 100)


def pipeline_options(streaming: bool, beam_args: Sequence[str] = ()) -> PipelineOptions:
    """Beam options from the command line, with the runner and streaming mode filled in when not given."""
    options = PipelineOptions(list(beam_args))
    standard = options.view_as(StandardOptions)
    if streaming:
        standard.streaming = True
    if standard.runner is None:
        standard.runner = LOCAL_STREAMING_RUNNER if streaming else LOCAL_BATCH_RUNNER
    return options


def _on_dataflow(options: PipelineOptions) -> bool:
    return "dataflow" in str(options.view_as(StandardOptions).runner).lower()


def build(pipeline: beam.Pipeline, request: JobRequest) -> None:
    """Add ``request.job`` to ``pipeline``."""
    options = pipeline.options or PipelineOptions()
    config, job, streaming = request.config, request.job, request.streaming
    id_label = streaming and _on_dataflow(options)
    dedup = DedupMode.ID_LABEL if id_label else DedupMode.STATE if streaming else DedupMode.GROUP
    sink = {"warehouse": request.warehouse, "streaming": streaming}
    dead_letters: list[beam.PCollection] = []

    events: dict[str, Any] = {}
    for stream in STREAMS[job]:
        parsed = (
            pipeline
            | f"Read {stream}" >> ReadMessages(request.inputs[stream], use_id_label=id_label)
            | f"Parse {stream}" >> ParseEvents(stream, job, dedup, dedup_ttl=config.pipelines.dedup_ttl,
                                               max_clock_skew=config.pipelines.max_clock_skew,
                                               shards=config.pipelines.dedup_shards)
        )
        events[stream] = parsed.events
        dead_letters.append(parsed.dead_letters)
        if request.raw_events:
            # Before any window or late-data gate: the batch recomputes the day from every valid event.
            rows = parsed.events if streaming else parsed.events | f"Unbatch {stream}" >> beam.FlatMap(iter)
            subject = STREAM_SCHEMAS[stream]
            rows | f"Write {table_name(subject)}" >> WriteTable(subject=subject, **sink)

    margin = config.pipelines.lateness_margin
    if job in ("sessions", "all"):
        rows, late = events["clickstream"] | "Sessions" >> SessionWindows(
            config.sessions.gap, config.sessions.allowed_lateness, streaming=streaming, lateness_margin=margin)
        rows | "Write user_sessions" >> WriteTable(subject="session_aggregate", **sink)
        dead_letters += late
    if job in ("revenue", "all"):
        catalog = None
        if request.catalog is not None:
            catalog, catalog_dead = pipeline | "Product catalogue" >> ProductCatalog(request.catalog)
            dead_letters.append(catalog_dead)
        per_minute, by_category_region, late = events["orders"] | "Revenue" >> RevenueWindows(
            config.revenue.allowed_lateness, streaming=streaming, lateness_margin=margin, catalog=catalog)
        per_minute | "Write revenue_per_minute" >> WriteTable(subject="revenue_per_minute", **sink)
        by_category_region | "Write revenue_by_category_region" >> WriteTable(subject="revenue_by_category_region", **sink)
        dead_letters += late
    if job in ("fraud", "all"):
        alerts, late = events["orders"] | "Fraud" >> FraudAlerts(config.fraud, bounded=not streaming)
        alerts | "Write fraud_alerts" >> WriteTable(subject="fraud_alert", **sink)
        if request.alerts_topic:
            alerts | "Publish fraud alerts" >> PublishJson(request.alerts_topic, "fraud_alert",
                                                           ("alert_id", "alert_type", "user_id"))
        dead_letters += late

    all_dead = dead_letters | "All dead letters" >> beam.Flatten()
    all_dead | "Write dead letters" >> WriteTable(subject="dead_letter", **sink)
    if request.dead_letter_topic:
        all_dead | "Publish dead letters" >> PublishJson(request.dead_letter_topic, "dead_letter", ("pipeline", "reason"))


@dataclass(frozen=True)
class JobReport:
    """What a finished (or stopped) run counted: ``{namespace: {counter: value}}`` summed over steps."""

    state: str
    counters: dict[str, dict[str, int]]

    def accounting(self, stream: str) -> tuple[int, int, int, int]:
        """(read, unique events, dead-lettered, duplicates) of one input stream: read = unique + dead + duplicates."""
        c = self.counters.get(stream, {})
        return c.get("read", 0), c.get("parsed", 0) - c.get("duplicates", 0), c.get("dead_lettered", 0), c.get("duplicates", 0)


def collect_counters(result: Any) -> dict[str, dict[str, int]]:
    totals: dict[str, dict[str, int]] = {}
    for counter in result.metrics().query()["counters"]:
        name = counter.key.metric
        value = max(counter.committed or 0, counter.attempted or 0)
        totals.setdefault(name.namespace, {})
        totals[name.namespace][name.name] = totals[name.namespace].get(name.name, 0) + int(value or 0)
    return totals


def run_job(request: JobRequest, beam_args: Sequence[str] = (), should_stop: Any = None, poll_s: float = 0.5) -> JobReport:
    """Build and run ``request``; a streaming run lasts until ``should_stop()`` is true (then it is cancelled)."""
    return run_pipeline(lambda pipeline: build(pipeline, request), request.streaming, beam_args, should_stop, poll_s)


def run_pipeline(builder: Callable[[beam.Pipeline], None], streaming: bool, beam_args: Sequence[str] = (),
                 should_stop: Any = None, poll_s: float = 0.5) -> JobReport:
    """Run the pipeline ``builder`` builds, on the runner the options name (the local runners by default)."""
    import time

    options = pipeline_options(streaming, beam_args)
    runner = str(options.view_as(StandardOptions).runner)
    if runner in (LOCAL_BATCH_RUNNER, LOCAL_STREAMING_RUNNER, "BundleBasedDirectRunner", "SwitchingDirectRunner"):
        tune_local_runner()
    pipeline = beam.Pipeline(options=options)
    builder(pipeline)
    result = pipeline.run()
    if streaming and should_stop is not None:
        from apache_beam.runners.runner import PipelineState

        while not PipelineState.is_terminal(result.state):
            if should_stop():
                result.cancel()
                break
            time.sleep(poll_s)
    else:
        result.wait_until_finish()
    return JobReport(str(result.state), collect_counters(result))
