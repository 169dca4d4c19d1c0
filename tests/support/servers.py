"""Local servers the tests start for real: a Kafka-compatible broker, the Pub/Sub, Firestore,
Cloud Storage and BigQuery emulators, PostgreSQL.

Each binds 127.0.0.1 on a free port, is waited for until it answers, and is stopped (and
its log shown on failure) when the test session ends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from streamforge.services import (
    LOOPBACK,
    ServerUnavailable,
    free_port,
    postgres_bindir,
    pubsub_emulator_command,
    start_bigquery_emulator,
    start_firestore_emulator,
    start_kafka_broker,
    start_postgres,
    start_storage_emulator,
    stop_process,
    storage_emulator_files,
    tansu_binary,
    wait_for_port,
)

__all__ = [
    "LOOPBACK",
    "ServerUnavailable",
    "GoogleCloudEmulators",
    "firestore_emulator",
    "free_port",
    "fresh_database",
    "kafka_broker",
    "postgres_bindir",
    "postgres_server",
    "pubsub_emulator",
    "pubsub_emulator_command",
    "stop_process",
    "google_cloud_emulators",
    "tansu_binary",
    "wait_for_port",
]


@contextmanager
def _serve(command: list[str], port: int, name: str, env: dict[str, str] | None = None) -> Iterator[None]:
    with tempfile.TemporaryDirectory(prefix=f"sf-{name}-") as tmp:
        log = Path(tmp) / f"{name}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=tmp,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )
        try:
            wait_for_port(port, process, log)
            yield
        finally:
            stop_process(process)


@contextmanager
def kafka_broker() -> Iterator[str]:
    """A memory-only Tansu broker (Kafka protocol) on loopback; yields HOST:PORT."""
    with tempfile.TemporaryDirectory(prefix="sf-tansu-") as tmp:
        broker = start_kafka_broker(Path(tmp) / "tansu.log")
        try:
            yield broker.address
        finally:
            broker.stop()


@contextmanager
def pubsub_emulator() -> Iterator[str]:
    """The emulator named by PUBSUB_EMULATOR_HOST, or a local one started on loopback; yields HOST:PORT."""
    if os.environ.get("PUBSUB_EMULATOR_HOST"):
        yield os.environ["PUBSUB_EMULATOR_HOST"]
        return
    command = pubsub_emulator_command()
    port = free_port()
    with _serve([*command, f"--host={LOOPBACK}", f"--port={port}"], port, "pubsub-emulator"):
        yield f"{LOOPBACK}:{port}"


@contextmanager
def firestore_emulator() -> Iterator[str]:
    """The emulator named by FIRESTORE_EMULATOR_HOST, or one started on loopback; yields HOST:PORT."""
    if os.environ.get("FIRESTORE_EMULATOR_HOST"):
        yield os.environ["FIRESTORE_EMULATOR_HOST"]
        return
    with tempfile.TemporaryDirectory(prefix="sf-firestore-") as tmp:
        emulator = start_firestore_emulator(Path(tmp) / "firestore-emulator.log")
        try:
            yield emulator.address
        finally:
            emulator.stop()


@dataclass(frozen=True)
class GoogleCloudEmulators:
    """http://HOST:PORT of the Cloud Storage and BigQuery emulators, and whether the BigQuery
    emulator's load jobs read the storage emulator's objects (true for the ones started here)."""

    storage: str
    bigquery: str
    linked: bool


@contextmanager
def google_cloud_emulators() -> Iterator[GoogleCloudEmulators]:
    """The emulators STORAGE_EMULATOR_HOST and BIGQUERY_EMULATOR_HOST name, or both started on
    loopback from their own environments (emulators/*.txt): the storage emulator keeping objects
    as files, which the BigQuery emulator's load jobs read as Google's read gs:// (a batch job's
    FILE_LOADS). The BigQuery emulator's log must not show an extension download (DuckDB fetches
    missing extensions itself, outside Python's sockets)."""
    if os.environ.get("STORAGE_EMULATOR_HOST") and os.environ.get("BIGQUERY_EMULATOR_HOST"):
        yield GoogleCloudEmulators(os.environ["STORAGE_EMULATOR_HOST"], os.environ["BIGQUERY_EMULATOR_HOST"], False)
        return
    with tempfile.TemporaryDirectory(prefix="sf-gcloud-") as tmp:
        data = Path(tmp) / "storage"
        data.mkdir()
        log = Path(tmp) / "bigquery-emulator.log"
        storage = start_storage_emulator(Path(tmp) / "storage-emulator.log", data=data)
        try:
            bigquery = start_bigquery_emulator(log, gcs_files=storage_emulator_files(data))
            try:
                yield GoogleCloudEmulators(f"http://{storage.address}", f"http://{bigquery.address}", True)
            finally:
                bigquery.stop()
                text = log.read_text(errors="replace")
                assert "download extension" not in text, text[-3000:]
        finally:
            storage.stop()


# -- PostgreSQL -------------------------------------------------------------------------------


@contextmanager
def postgres_server(database: str = "shop") -> Iterator[str]:
    """A throwaway PostgreSQL cluster with logical decoding, on loopback; yields a postgresql:// URL."""
    with tempfile.TemporaryDirectory(prefix="sf-postgres-log-") as tmp:
        service = start_postgres(Path(tmp) / "postgres.log", database)
        try:
            yield service.address
        finally:
            service.stop(timeout=30, first=signal.SIGINT)  # fast shutdown: disconnect clients, stop


@contextmanager
def fresh_database(cluster: str) -> Iterator[str]:
    """A new database on the cluster whose URL is ``cluster`` (as postgres); afterwards its
    replication slots are dropped, then the database, and no slot of the cluster is left."""
    import psycopg

    admin_url = cluster.rsplit("/", 1)[0] + "/postgres"
    name = f"shop_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{admin_url.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            for (slot,) in admin.execute(
                "SELECT slot_name FROM pg_replication_slots WHERE database = %s", (name,)
            ).fetchall():
                admin.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            assert admin.execute("SELECT count(*) FROM pg_replication_slots").fetchone()[0] == 0
