"""The whole system live on one machine: what `streamforge up` starts, watches and stops.

Everything runs on 127.0.0.1 as child processes of the `up` process, each in its own process
group, its output in ``WORKDIR/logs/``:

    Pub/Sub emulator -> topics and subscriptions (streamforge/topology.py, as `pulumi up` makes them)
    (with transport "kafka": also a Kafka broker, Tansu, carrying the events and the changes;
     the alerts and dead letters still go through Pub/Sub, as in production)
    webhook sink  <- alert dispatcher (functions-framework, fed by the push subscription)
    PostgreSQL + shop schema -> CDC capture (Debezium, embedded) -> `run cdc` -> WORKDIR/cdc.duckdb
                 + OLTP workload
    simulator (real time, every message also recorded in WORKDIR/published/) -> `run all`
        -> WORKDIR/warehouse.duckdb, fraud alerts -> the dispatcher's topic
    dashboard (reads the warehouses' snapshots, the sink's log and the jobs' progress)

With warehouse "bigquery", both jobs write instead to one dataset of a local BigQuery
emulator (its data in WORKDIR/bigquery/), created as `pulumi up` declares it, by streaming
inserts as on Dataflow; the dashboard reads its current rows.

``stop()`` ends it in order, losing nothing: producers first; then, once the jobs have taken
everything published, the jobs are drained (every open window written); then the alerts
still on their way reach the webhook; then the servers.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from google.cloud import pubsub_v1

from streamforge.bigquery_warehouse import EMULATOR_ENV, BigQueryWarehouse, create_warehouse
from streamforge.cdc.config import DebeziumServerConfig
from streamforge.config import Config
from streamforge.functions.webhook_sink import SECRET_ENV
from streamforge.live.progress import read_job_progress
from streamforge.naming import DATASET
from streamforge.pubsub_setup import check_project, create_topology
from streamforge.services import (
    LocalService,
    free_port,
    start_bigquery_emulator,
    start_kafka_broker,
    start_postgres,
    start_pubsub_emulator,
    start_service,
)
from streamforge.timeutil import format_millis
from streamforge.topology import topology
from streamforge.transport import STREAM_FILES, ensure_kafka_topics
from streamforge.warehouse_reading import WarehouseLocation, open_warehouse
from streamforge.warehouse_tables import captured_tables, warehouse_tables

__all__ = ["STATE_FILE", "LiveSettings", "LiveSystem", "Progress", "count_alerts", "read_progress", "sink_records"]

STATE_FILE = "live.json"


@dataclass(frozen=True)
class LiveSettings:
    workdir: Path
    project: str = "streamforge-local"
    rate: float = 200.0  # simulator events per second
    cdc: bool = True
    cdc_rate: float = 5.0  # workload transactions per second
    seed: int = 42
    dashboard_port: int = 8050
    config_file: Path | None = None  # the --config the children read too
    transport: str = "pubsub"  # or "kafka": events and CDC changes through a local Kafka broker
    warehouse_kind: str = "duckdb"  # or "bigquery": a local BigQuery emulator

    @property
    def warehouse(self) -> Path:
        """The analytics job's DuckDB file (warehouse "duckdb")."""
        return self.workdir / "warehouse.duckdb"

    @property
    def cdc_warehouse(self) -> Path:
        """The CDC job's DuckDB file (warehouse "duckdb")."""
        return self.workdir / "cdc.duckdb"

    @property
    def bigquery_data(self) -> Path:
        """Where the BigQuery emulator keeps its data (warehouse "bigquery")."""
        return self.workdir / "bigquery"

    @property
    def warehouse_url(self) -> str:
        """What the analytics job writes and the dashboard reads."""
        if self.warehouse_kind == "bigquery":
            return BigQueryWarehouse(self.project, DATASET).url
        return f"duckdb://{self.warehouse}"

    @property
    def cdc_warehouse_url(self) -> str:
        """What the CDC job writes: the same dataset in BigQuery (as deployed), a file of its own in DuckDB."""
        return self.warehouse_url if self.warehouse_kind == "bigquery" else f"duckdb://{self.cdc_warehouse}"

    @property
    def published(self) -> Path:
        return self.workdir / "published"

    @property
    def labels(self) -> Path:
        return self.workdir / "fraud_labels.jsonl"

    @property
    def alerts_log(self) -> Path:
        return self.workdir / "logs" / "webhook-sink.log"

    def progress_file(self, job: str) -> Path:
        return self.workdir / f"{job}.progress.json"


@dataclass
class Progress:
    """What the jobs' feeds have taken, by job: messages pulled and acknowledged, and the
    lowest watermark (ms) of their inputs."""

    pulled: dict[str, int] = field(default_factory=dict)
    acked: dict[str, int] = field(default_factory=dict)
    watermark_ms: dict[str, int | None] = field(default_factory=dict)
    at: float = 0.0


def read_progress(settings: LiveSettings, jobs: tuple[str, ...] = ("analytics", "cdc")) -> Progress:
    progress = Progress(at=time.time())
    for job in jobs:
        state = read_job_progress(settings.progress_file(job))
        if state is not None:
            progress.pulled[job], progress.acked[job], progress.watermark_ms[job] = (
                state.pulled,
                state.acked,
                state.watermark_ms,
            )
    return progress


def sink_records(log: Path) -> list[dict]:
    """What the webhook sink received (its ``--jsonl`` lines: verdict, received_at, body, ...)."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []
    records = []
    for line in lines:
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                pass  # a line being written
    return records


def count_alerts(log: Path) -> int:
    """Alerts the webhook sink accepted, signature verified, each once."""
    return sum(1 for record in sink_records(log) if record.get("verdict") == "alert")


class LiveSystem:
    def __init__(self, settings: LiveSettings, config: Config, say: Callable[[str], None] = print):
        self.settings, self.config, self.say = settings, config, say
        self.services: dict[str, LocalService] = {}
        self.urls: dict[str, str] = {}
        self.env: dict[str, str] = {}
        self.kafka = ""  # the broker's HOST:PORT with transport "kafka"
        self.secret = secrets.token_hex(16)
        self.analytics_inputs: dict[str, str] = {}  # stream -> the analytics job's input path in its progress file
        check_project(settings.project)

    # -- starting ------------------------------------------------------------------------------

    def _streamforge(
        self, name: str, *args: str, port: int | None = None, env: dict[str, str] | None = None
    ) -> LocalService:
        command = [sys.executable, "-m", "streamforge"]
        if self.settings.config_file is not None:
            command += ["--config", str(self.settings.config_file)]
        service = start_service(
            name,
            [*command, *args],
            self.settings.workdir / "logs" / f"{name}.log",
            port=port,
            env={**self.env, **(env or {})},
            cwd=self.settings.workdir,
        )
        self.services[name] = service
        return service

    def start(self) -> None:
        s = self.settings
        for stale in (
            s.warehouse,
            s.cdc_warehouse,
            s.alerts_log,
            s.labels,
            *s.workdir.glob("*.progress.json"),
            *s.published.glob("*.jsonl"),
        ):
            stale.unlink(missing_ok=True)
        (s.workdir / "logs").mkdir(parents=True, exist_ok=True)
        emulator = start_pubsub_emulator(s.workdir / "logs" / "pubsub-emulator.log")
        self.services["pubsub-emulator"] = emulator
        self.env = {"PUBSUB_EMULATOR_HOST": emulator.address, "PYTHONUNBUFFERED": "1"}
        os.environ["PUBSUB_EMULATOR_HOST"] = emulator.address  # this process's clients (topology, dashboard)
        self.say(f"Pub/Sub emulator on {emulator.address}")
        if s.warehouse_kind == "bigquery":
            self._start_bigquery()

        sink_port, dispatcher_port = free_port(), free_port()
        self._streamforge(
            "webhook-sink",
            "webhook-sink",
            "--port",
            str(sink_port),
            "--jsonl",
            port=sink_port,
            env={SECRET_ENV: self.secret},
        )
        self.urls["webhook sink"] = f"http://127.0.0.1:{sink_port}/alerts"
        webhooks = [{"name": "local-sink", "url": self.urls["webhook sink"], "secret_env": SECRET_ENV}]
        self._streamforge(
            "alert-dispatcher",
            "functions",
            "serve",
            "alert_dispatcher",
            "--push",
            "--port",
            str(dispatcher_port),
            port=dispatcher_port,
            env={
                "STREAMFORGE_WEBHOOKS": json.dumps(webhooks),
                SECRET_ENV: self.secret,
                "STREAMFORGE_ALERT_LEDGER": "memory",
            },
        )
        self.urls["alert dispatcher (push endpoint)"] = f"http://127.0.0.1:{dispatcher_port}/"

        debezium = DebeziumServerConfig.load() if s.cdc else None
        layout = topology(self.config, debezium)
        if s.transport == "kafka":
            self._start_kafka(debezium)
        create_topology(
            pubsub_v1.PublisherClient(),
            pubsub_v1.SubscriberClient(),
            s.project,
            layout,
            {"alert_dispatcher": self.urls["alert dispatcher (push endpoint)"]},
        )
        self.say(f"project {s.project}: {len(layout.topics)} topics, {len(layout.subscriptions)} subscriptions")

        if s.cdc:
            self._start_cdc(layout.cdc_subscription_pattern)

        topics = self.config.topics
        if s.transport == "kafka":
            inputs = ("--input", f"kafka://{self.kafka}")  # each stream's topic from [topics]
            self.analytics_inputs = {stream: getattr(topics, stream) for stream in STREAM_FILES}
        else:
            sub = f"pubsub://projects/{s.project}/subscriptions"
            inputs = (
                "--clickstream",
                f"{sub}/{layout.subscription('analytics', topics.clickstream).id}",
                "--orders",
                f"{sub}/{layout.subscription('analytics', topics.orders).id}",
            )
            self.analytics_inputs = {
                stream: f"projects/{s.project}/subscriptions/{layout.subscription('analytics', getattr(topics, stream)).id}"
                for stream in STREAM_FILES
            }
        self._streamforge(
            "analytics-job",
            "run",
            "all",
            *inputs,
            "--warehouse",
            s.warehouse_url,
            "--alerts-topic",
            f"projects/{s.project}/topics/{topics.fraud_alerts}",
            "--dead-letter-topic",
            f"projects/{s.project}/topics/{topics.dead_letter}",
            "--progress-file",
            str(s.progress_file("analytics")),
        )
        self._wait_for_file(s.progress_file("analytics"), "analytics-job")
        self._streamforge(
            "simulator",
            "simulate",
            "--output",
            self._producer_output,
            "--rate",
            str(s.rate),
            "--seed",
            str(s.seed),
            "--record",
            str(s.published),
            "--labels",
            str(s.labels),
        )
        self.say(f"simulator publishing about {s.rate:,.0f} events/s (recorded in {s.published})")

        self._streamforge(
            "dashboard",
            "dashboard",
            "--warehouse",
            s.warehouse_url,
            "--port",
            str(s.dashboard_port),
            "--alerts-log",
            str(s.alerts_log),
            "--progress",
            str(s.workdir),
            *(["--cdc-warehouse", s.cdc_warehouse_url] if s.cdc else []),
            port=s.dashboard_port,
        )
        self.urls["dashboard"] = f"http://127.0.0.1:{s.dashboard_port}/"
        self.write_state()

    @property
    def _producer_output(self) -> str:
        return f"kafka://{self.kafka}" if self.settings.transport == "kafka" else f"pubsub://{self.settings.project}"

    def _start_kafka(self, debezium: DebeziumServerConfig | None) -> None:
        """The broker, with the event topics (and the captured tables' topics) made before any
        job subscribes: 3 partitions each, as the producers would make them."""
        broker = start_kafka_broker(self.settings.workdir / "logs" / "kafka-broker.log")
        self.services["kafka-broker"] = broker
        self.kafka = broker.address
        topics = [self.config.topics.clickstream, self.config.topics.orders]
        if debezium is not None:
            topics += [debezium.topic(table) for table in debezium.tables]
        ensure_kafka_topics(broker.address, topics, RuntimeError, partitions=3)
        self.say(f"Kafka broker (Tansu) on {broker.address}: {len(topics)} topics")

    def _start_bigquery(self) -> None:
        """The emulator, on a fresh data folder, with the dataset, tables and views `pulumi up` deploys."""
        s = self.settings
        if s.bigquery_data.exists():
            shutil.rmtree(s.bigquery_data)
        s.bigquery_data.mkdir(parents=True)
        emulator = start_bigquery_emulator(
            s.workdir / "logs" / "bigquery-emulator.log", project=s.project, data=s.bigquery_data
        )
        self.services["bigquery-emulator"] = emulator
        self.env[EMULATOR_ENV] = os.environ[EMULATOR_ENV] = f"http://{emulator.address}"
        debezium = DebeziumServerConfig.load() if s.cdc else None
        warehouse = BigQueryWarehouse(s.project, DATASET)
        created = create_warehouse(warehouse, warehouse_tables(self.config, captured_tables(debezium)))
        self.say(f"BigQuery emulator on {emulator.address}: {warehouse.url}, {len(created)} tables and views")

    def _start_cdc(self, pattern: str) -> None:
        s = self.settings
        database = start_postgres(s.workdir / "logs" / "postgres.log")
        self.services["postgres"] = database
        self.say(f"PostgreSQL on {database.address}")
        url = database.address
        self._run_once("cdc-init", "cdc", "workload", "--database", url, "--operations", "1", "--init", "-q")
        # as in production, the tables' owner makes the publication and the heartbeat table first
        self._run_once("cdc-setup", "cdc", "setup", "--database", url, "--user", "postgres")
        self._streamforge(
            "cdc-capture",
            "cdc",
            "run",
            "--output",
            self._producer_output,
            "--database",
            url,
            "--offsets",
            str(s.workdir / "cdc-offsets.dat"),
            "-q",
        )
        changes = (
            f"kafka://{self.kafka}"
            if s.transport == "kafka"
            else f"pubsub://projects/{s.project}/subscriptions/{pattern}"
        )
        self._streamforge(
            "cdc-job",
            "run",
            "cdc",
            "--input",
            changes,
            "--warehouse",
            s.cdc_warehouse_url,
            "--progress-file",
            str(s.progress_file("cdc")),
        )
        self._streamforge("cdc-workload", "cdc", "workload", "--database", url, "--rate", str(s.cdc_rate), "--no-init")

    def _run_once(self, name: str, *args: str) -> None:
        service = self._streamforge(name, *args)
        code = service.process.wait(timeout=120)
        del self.services[name]
        if code != 0:
            raise RuntimeError(f"`streamforge {' '.join(args)}` exited {code}: see {service.log}")

    def _wait_for_file(self, path: Path, name: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not path.exists():
            process = self.services[name].process
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start (exit {process.returncode}): see {self.services[name].log}")
            time.sleep(0.2)

    def write_state(self) -> None:
        state = {
            "pid": os.getpid(),
            "started": time.time(),
            "project": self.settings.project,
            "urls": self.urls,
            "services": {
                n: {"pid": s.process.pid, "address": s.address, "log": str(s.log)} for n, s in self.services.items()
            },
        }
        (self.settings.workdir / STATE_FILE).write_text(json.dumps(state, indent=2))

    def failed(self) -> list[str]:
        """The services that exited on their own."""
        return [
            f"{n} (exit {s.process.returncode}, log {s.log})"
            for n, s in self.services.items()
            if s.process.poll() is not None
        ]

    # -- stopping ------------------------------------------------------------------------------

    def stop(self) -> None:
        """Producers, then (once the jobs have taken what was published) the jobs, drained; then
        the alert path once the last alerts are delivered; then the servers."""
        for name in ("simulator", "cdc-workload"):
            self._stop(name, signal.SIGINT)
        time.sleep(1)
        self._stop("cdc-capture", signal.SIGTERM, timeout=60)
        analytics = self.services.get("analytics-job")
        if analytics is not None and analytics.process.poll() is not None:
            self.say(self.lost_windows(analytics.process.returncode))
        else:
            self._wait_until_taken()
        for name in ("analytics-job", "cdc-job"):
            self._stop(name, signal.SIGINT, timeout=300)
        self._wait_for_alerts()
        for name in ("dashboard", "alert-dispatcher", "webhook-sink"):
            self._stop(name, signal.SIGTERM)
        self._stop("postgres", signal.SIGINT, timeout=30)
        self._stop("kafka-broker", signal.SIGTERM)
        self._stop("bigquery-emulator", signal.SIGTERM)
        self._stop("pubsub-emulator", signal.SIGTERM)
        (self.settings.workdir / STATE_FILE).unlink(missing_ok=True)

    def _stop(self, name: str, first: int, timeout: float = 15) -> None:
        service = self.services.pop(name, None)
        if service is not None:
            self.say(f"stopping {name}")
            service.stop(timeout=timeout, first=first)

    def lost_windows(self, code: int) -> str:
        """What an analytics job that ended on its own (e.g. SIGKILL) lost, and how to rebuild."""
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit {code}"
        progress = read_progress(self.settings, ("analytics",))
        watermark = progress.watermark_ms.get("analytics")
        until = f", event time up to {format_millis(watermark)}" if watermark is not None else ""
        published, rebuilt = self.settings.published, self.settings.workdir / "rebuilt.duckdb"
        config = f" --config {self.settings.config_file}" if self.settings.config_file else ""
        return (
            f"the analytics job ended before it was drained ({how}). It had taken "
            f"{progress.acked.get('analytics', 0):,} messages{until}; the sessions and revenue minutes still "
            "open in it are lost (the local runner keeps window state in memory; Dataflow checkpoints it), "
            f"and what it wrote before stays. Everything published is in {published}: rebuild the analytics "
            f"tables exactly from it with\n  streamforge{config} run all --input file://{published} "
            f"--warehouse duckdb://{rebuilt}"
        )

    def published_count(self) -> dict[str, int]:
        """Messages the simulator sent (its record), by stream, malformed and repeated ones included."""
        paths = {stream: self.settings.published / name for stream, name in STREAM_FILES.items()}
        return {stream: sum(1 for _ in path.open("rb")) if path.exists() else 0 for stream, path in paths.items()}

    def _wait_until_taken(self, timeout: float = 120) -> None:
        """Until the analytics job has taken, of each stream, every message the simulator
        published (and the CDC job's count has stopped growing). Stream by stream: what another
        producer published beside the simulator (a user's own orders) must not stand in for
        clicks the job has not taken yet."""
        published = self.published_count()
        deadline, last_cdc, steady, behind = time.monotonic() + timeout, -1, 0, {}
        while time.monotonic() < deadline:
            job = read_job_progress(self.settings.progress_file("analytics"))
            taken = {} if job is None else job.acked_by_input
            cdc = read_progress(self.settings, ("cdc",)).acked.get("cdc", 0)
            steady = steady + 1 if cdc == last_cdc else 0
            last_cdc = cdc
            missing = {s: n - taken.get(self.analytics_inputs.get(s, s), 0) for s, n in published.items()}
            behind = {stream: count for stream, count in missing.items() if count > 0}
            if not behind and (not self.settings.cdc or steady >= 4):
                return
            time.sleep(0.5)
        short = "; ".join(f"{stream}: {count:,} not taken" for stream, count in behind.items())
        self.say(
            f"the jobs had not taken everything published after {timeout:.0f} s{f' ({short})' if short else ''}; "
            "draining what they have (the rest stays in the subscriptions)"
        )

    def _wait_for_alerts(self, timeout: float = 30) -> None:
        """Until the webhook has every alert the analytics job wrote (push delivery follows the job)."""
        try:
            with open_warehouse(WarehouseLocation(self.settings.warehouse_url), ["fraud_alerts"]) as reading:
                (expected,) = reading.connection.execute("SELECT count(*) FROM fraud_alerts").fetchone()
        except Exception:  # noqa: BLE001 - no table yet: no alert to wait for
            return
        deadline = time.monotonic() + timeout
        while count_alerts(self.settings.alerts_log) < expected and time.monotonic() < deadline:
            time.sleep(0.5)
