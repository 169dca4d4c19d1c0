"""How a job runs: on the local runners of this machine, or submitted to Dataflow.

- Locally (the default): the DirectRunner's engines, with this process tuned for them while
  the job runs (``local_runner_tuning``). A batch job runs to the end; its bounded Kafka reads
  are planned when it starts and their offsets committed once it has written its results. A
  streaming job reads Pub/Sub or Kafka through the local feed (local/feed.py) on the patched
  runner (local/direct_runner_fixes.py) until ``should_stop()`` is true; then it drains: the
  feed stops pulling, the watermarks go to the end, every open window fires and is written,
  the job finishes, and the Kafka feed commits what was taken. The counters come back as a
  ``JobReport``.
- Remote (``--runner DataflowRunner``): ``submit`` builds the job, submits it and returns at
  once with a ``Submission`` (id, name, region, console link); following, draining and
  cancelling it are dataflow/control.py's. With ``--dry_run=True`` the whole job is built
  offline (no credentials, no network) and nothing is submitted.

Options filled in when not given: the runner, streaming mode, ``save_main_session`` off
(everything the workers run is importable from the package; the main session of a console
script is not), and on Dataflow a stable job name (``streamforge-<job>``: what ``--update``
finds), labels, the StreamForge package for the workers when no image is named
(dataflow/staging.py), and with ``--update`` the renamed steps (dataflow/renames.py).
"""

from __future__ import annotations

import gc
import threading
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import (
    GoogleCloudOptions,
    PipelineOptions,
    SetupOptions,
    StandardOptions,
    TestOptions,
)

from beam_pipelines.common.io import SpecError
from beam_pipelines.common.kafka import KafkaReadError, commit_bounded, plan_bounded
from beam_pipelines.common.pubsub_sources import check_sources_exist
from beam_pipelines.common.warehouse import flush_writers, warehouse_writers
from beam_pipelines.dataflow.renames import transform_renames
from beam_pipelines.dataflow.staging import staged_package
from beam_pipelines.jobs import build
from beam_pipelines.local.bigquery_emulator import bigquery_emulator_endpoint
from beam_pipelines.local.direct_runner_fixes import patched_direct_runner
from beam_pipelines.local.feed import FeedCounts, KafkaFeed, PubSubFeed
from beam_pipelines.requests import (
    CdcRequest,
    JobRequest,
    Request,
    kafka_streams,
    kafka_urls,
    pubsub_sources,
    remote_problems,
    with_kafka_urls,
)
from streamforge.bigquery_warehouse import BigQueryWarehouse, WarehouseDrift, create_warehouse
from streamforge.naming import JOB_LABEL, dataflow_job_name
from streamforge.warehouse import GATHER_S, SNAPSHOT_EVERY_S
from streamforge.warehouse_tables import warehouse_tables

__all__ = [
    "LOCAL_RUNNERS",
    "JobReport",
    "Submission",
    "collect_counters",
    "console_url",
    "is_remote",
    "local_runner_tuning",
    "pipeline_options",
    "run",
    "run_locally",
    "submit",
]

LOCAL_BATCH_RUNNER = "FnApiRunner"  # the DirectRunner's batch engine, named so it skips the Prism download
LOCAL_STREAMING_RUNNER = "DirectRunner"
#: Runners whose workers are this process: they read this machine's files and DuckDB.
LOCAL_RUNNERS = frozenset(
    {
        LOCAL_BATCH_RUNNER,
        LOCAL_STREAMING_RUNNER,
        "BundleBasedDirectRunner",
        "SwitchingDirectRunner",
        "PrismRunner",
        "TestDirectRunner",
    }
)


@dataclass(frozen=True)
class JobReport:
    """What a finished (or stopped) local run counted: ``{namespace: {counter: value}}`` summed over steps."""

    state: str
    counters: dict[str, dict[str, int]]

    def accounting(self, stream: str) -> tuple[int, int, int, int]:
        """(read, unique events, dead-lettered, duplicates) of one input stream: read = unique + dead + duplicates."""
        c = self.counters.get(stream, {})
        return (
            c.get("read", 0),
            c.get("parsed", 0) - c.get("duplicates", 0),
            c.get("dead_lettered", 0),
            c.get("duplicates", 0),
        )


@dataclass(frozen=True)
class Submission:
    """A job handed to Dataflow. ``job_id`` is None when it was not submitted: a dry run (built
    only), or a template launch, where the job was written to ``template_location`` for the
    Dataflow service to start (what Google's Flex Template launcher asks for)."""

    job_id: str | None
    name: str
    project: str
    region: str
    streaming: bool
    job: Any = None  # the built apiclient.Job (its pipeline proto and v1b3 request)
    template_location: str | None = None

    @property
    def console_url(self) -> str | None:
        return None if self.job_id is None else console_url(self.project, self.region, self.job_id)


def console_url(project: str, region: str, job_id: str) -> str:
    return f"https://console.cloud.google.com/dataflow/jobs/{region}/{job_id}?project={project}"


def is_remote(options: PipelineOptions) -> bool:
    runner = options.view_as(StandardOptions).runner
    name = runner if isinstance(runner, str) else type(runner).__name__
    return name not in LOCAL_RUNNERS


def pipeline_options(request: Request, beam_args: Sequence[str] = ()) -> PipelineOptions:
    """Beam options from the command line, with what StreamForge fills in when not given."""
    options = PipelineOptions(list(beam_args))
    standard = options.view_as(StandardOptions)
    if request.streaming:
        standard.streaming = True
    if standard.runner is None:
        standard.runner = LOCAL_STREAMING_RUNNER if request.streaming else LOCAL_BATCH_RUNNER
    setup = options.view_as(SetupOptions)
    if setup.save_main_session is None:
        setup.save_main_session = False
    if is_remote(options):
        cloud = options.view_as(GoogleCloudOptions)
        cloud.job_name = cloud.job_name or dataflow_job_name(request.job)
        labels = list(cloud.labels or [])
        if not any(label.startswith(f"{JOB_LABEL}=") for label in labels):
            cloud.labels = [*labels, f"{JOB_LABEL}={request.job}"]
        if cloud.update and not cloud.transform_name_mapping:
            cloud.transform_name_mapping = transform_renames(request)
    return options


@contextmanager
def local_runner_tuning() -> Iterator[None]:
    """Tunes this process for Beam's in-process runner while a job runs, then restores it
    (docs/pipelines.md, "Performance").

    - No user-state cache. The FnApiRunner's embedded worker always builds a 100 MB state
      cache (ignoring --max_cache_memory_usage_mb), and the cache sizes every entry with
      objsize, which walks the globals of every loaded module: with Beam and the GCP clients
      loaded that is about 1 ms per state write, so a stateful DoFn managed 500 events/s.
      Without the cache: 10k/s.
    - Garbage collection less often. The runner keeps whole stages' data in memory, and the
      default thresholds run a collection every 700 new containers, each walking that heap:
      a quarter of a batch job's time went there.
    """
    from apache_beam.runners.portability.fn_api_runner import worker_handlers

    cache_mb, thresholds = worker_handlers.STATE_CACHE_SIZE_MB, gc.get_threshold()
    worker_handlers.STATE_CACHE_SIZE_MB = 0
    gc.set_threshold(200_000, 20, 100)
    try:
        yield
    finally:
        worker_handlers.STATE_CACHE_SIZE_MB = cache_mb
        gc.set_threshold(*thresholds)


def collect_counters(result: Any) -> dict[str, dict[str, int]]:
    totals: dict[str, dict[str, int]] = {}
    for counter in result.metrics().query()["counters"]:
        name = counter.key.metric
        value = max(counter.committed or 0, counter.attempted or 0)
        totals.setdefault(name.namespace, {})
        totals[name.namespace][name.name] = totals[name.namespace].get(name.name, 0) + int(value or 0)
    return totals


def run_locally(
    request: Request,
    options: PipelineOptions,
    should_stop: Callable[[], bool] | None = None,
    poll_s: float = 0.5,
    on_progress: Callable[[dict[str, FeedCounts]], None] | None = None,
) -> JobReport:
    """Run ``request`` on this machine; a streaming run lasts until ``should_stop()``, then drains,
    calling ``on_progress`` with the feed's counts by input path every ``poll_s``.
    A Pub/Sub source that does not exist is a SpecError before anything starts."""
    sources = pubsub_sources(request)
    check_sources_exist(sources)
    request = plan_kafka_reads(request)
    with ExitStack() as stack:
        stack.enter_context(local_runner_tuning())
        if request.warehouse.kind == "bigquery":  # Beam's BigQuery IO on the emulator, if one is named
            stack.enter_context(bigquery_emulator_endpoint(request.warehouse.project))
            declare_bigquery_tables(request)
        stack.enter_context(warehouse_writers(SNAPSHOT_EVERY_S, GATHER_S) if request.streaming else warehouse_writers())
        feed = _local_feed(request, sources)
        if feed is not None:
            try:
                stack.enter_context(feed)
            except KafkaReadError as exc:
                raise SpecError(str(exc)) from None
            stack.enter_context(patched_direct_runner())
        pipeline = beam.Pipeline(options=options)
        build(pipeline, request, feed)
        result = pipeline.run()
        if feed is None:
            result.wait_until_finish()
        else:
            _run_until_stopped(result, feed, should_stop or (lambda: False), poll_s, on_progress)
        if feed is not None and feed.errors:
            raise SpecError(f"reading {feed.name} failed: {feed.errors[0]}")
        flush_writers()  # what the writers gathered is written before anything counts it as done
        if isinstance(feed, KafkaFeed):
            feed.commit()  # the drained run has written everything it took: the next run goes on from here
    commit_kafka_reads(request)  # the results are written (the warehouse is closed): the next read goes on from here
    return JobReport(str(result.state), _with_feed_counts(collect_counters(result), request, feed))


def declare_bigquery_tables(request: Request) -> list[str]:
    """Create the BigQuery tables and views the run writes, as ``pulumi up`` declares them
    (the jobs append only); a table that exists with other columns is a SpecError listing
    the differences. Returns what was created."""
    warehouse = BigQueryWarehouse(request.warehouse.project, request.warehouse.dataset)
    specs = warehouse_tables(request.config, request.tables if isinstance(request, CdcRequest) else None)
    try:
        return create_warehouse(warehouse, specs)
    except WarehouseDrift as exc:
        raise SpecError(f"--warehouse {warehouse.url}: {exc}") from None


def plan_kafka_reads(request: Request) -> Request:
    """``request`` with each bounded Kafka input's offsets fixed (kafka.plan_bounded)."""
    try:
        return with_kafka_urls(request, lambda url: plan_bounded(url) if url.bounded else url)
    except KafkaReadError as exc:
        raise SpecError(str(exc)) from None


def commit_kafka_reads(request: Request) -> None:
    """Commit each planned bounded Kafka read's end offsets for its group (kafka.commit_bounded)."""
    for url in kafka_urls(request):
        if url.bounded:
            commit_bounded(url)


def _local_feed(request: Request, pubsub: list[tuple[str, str]]) -> PubSubFeed | KafkaFeed | None:
    """The feed of a local streaming run: its Pub/Sub or its Kafka inputs."""
    if not request.streaming:
        return None
    settings = request.config
    kafka = kafka_streams(request)
    if kafka:
        return KafkaFeed(kafka, settings.local_streaming, settings.pipelines.dedup_ttl)
    if pubsub:
        return PubSubFeed([path for _, path in pubsub], settings.local_streaming, settings.pipelines.dedup_ttl)
    return None


def _run_until_stopped(
    result: Any,
    feed: PubSubFeed | KafkaFeed,
    should_stop: Callable[[], bool],
    poll_s: float,
    on_progress: Callable[[dict[str, FeedCounts]], None] | None,
) -> None:
    """Wait for a streaming run; when ``should_stop()`` (or the feed failed), drain it and wait
    for the drain (the local runner's result says it is done only from wait_until_finish)."""
    failure: list[BaseException] = []

    def wait() -> None:
        try:
            result.wait_until_finish()
        except BaseException as exc:  # noqa: BLE001 - raised again in the calling thread
            failure.append(exc)

    waiter = threading.Thread(target=wait, name="wait for the pipeline", daemon=True)
    waiter.start()
    stopping = False
    while waiter.is_alive():
        if not stopping and (should_stop() or feed.errors):
            feed.drain()  # then wait for the drain: open windows fire and are written
            stopping = True
        if on_progress is not None:
            on_progress(feed.counts())
        waiter.join(poll_s)
    if failure:
        raise failure[0]


def _with_feed_counts(
    counters: dict[str, dict[str, int]], request: Request, feed: PubSubFeed | KafkaFeed | None
) -> dict[str, dict[str, int]]:
    """Redeliveries the feed dropped by id count as read and as duplicates of their stream,
    as the parse step counts those it drops (read = events + dead-lettered + duplicates)."""
    if feed is None or not isinstance(request, JobRequest):
        return counters
    for stream, spec in request.inputs.items():
        dropped = feed.counts()[spec.location].duplicates
        stream_counters = counters.setdefault(stream, {})
        for name in ("read", "parsed", "duplicates"):
            stream_counters[name] = stream_counters.get(name, 0) + dropped
    return counters


def submit(request: Request, options: PipelineOptions) -> Submission:
    """Build ``request`` for a remote runner and submit it (a dry run only builds it).

    Refuses, before building, what the workers could not use (requests.remote_problems)."""
    problems = remote_problems(request)
    if problems:
        raise SpecError("; ".join(problems))
    cloud = options.view_as(GoogleCloudOptions)
    with staged_package(options):
        pipeline = beam.Pipeline(options=options)
        build(pipeline, request)
        result = pipeline.run()
    job = getattr(result, "job", None)  # a dry run's result carries the built job
    # --template_location (Google's Flex Template launcher passes it): Beam writes the job to
    # that object instead of submitting it, and its result has no job
    submitted = not (options.view_as(TestOptions).dry_run or cloud.template_location)
    job_id = result.job_id() if submitted else None
    name = job.proto.name if job is not None else cloud.job_name
    return Submission(job_id, name, cloud.project, cloud.region, request.streaming, job, cloud.template_location)


def run(
    request: Request,
    options: PipelineOptions,
    should_stop: Callable[[], bool] | None = None,
    poll_s: float = 0.5,
    on_progress: Callable[[dict[str, FeedCounts]], None] | None = None,
) -> JobReport | Submission:
    """Run ``request`` with ``options`` (from ``pipeline_options``): locally to the end (or
    ``should_stop``), or submitted to a remote runner."""
    if is_remote(options):
        return submit(request, options)
    return run_locally(request, options, should_stop, poll_s, on_progress)
