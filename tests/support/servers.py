"""Local servers the tests start for real: a Kafka-compatible broker, the Pub/Sub and Firestore
emulators, PostgreSQL.

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
    tansu_binary,
    wait_for_port,
)

__all__ = [
    "LOOPBACK",
    "ServerUnavailable",
    "bigquery_emulator",
    "firestore_emulator",
    "free_port",
    "fresh_database",
    "kafka_broker",
    "postgres_bindir",
    "postgres_server",
    "pubsub_emulator",
    "pubsub_emulator_command",
    "stop_process",
    "storage_emulator",
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


@contextmanager
def storage_emulator() -> Iterator[str]:
    """The Cloud Storage emulator named by STORAGE_EMULATOR_HOST, or one started on loopback from
    its own environment (emulators/storage.txt); yields its http://HOST:PORT."""
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        yield os.environ["STORAGE_EMULATOR_HOST"]
        return
    with tempfile.TemporaryDirectory(prefix="sf-storage-") as tmp:
        emulator = start_storage_emulator(Path(tmp) / "storage-emulator.log")
        try:
            yield f"http://{emulator.address}"
        finally:
            emulator.stop()


@contextmanager
def bigquery_emulator(project: str = "streamforge") -> Iterator[str]:
    """The BigQuery emulator named by BIGQUERY_EMULATOR_HOST, or one started on loopback from its
    own environment (emulators/bigquery.txt); yields its http://HOST:PORT. Its log must not show
    an extension download (DuckDB fetches missing extensions itself, outside Python's sockets)."""
    if os.environ.get("BIGQUERY_EMULATOR_HOST"):
        yield os.environ["BIGQUERY_EMULATOR_HOST"]
        return
    with tempfile.TemporaryDirectory(prefix="sf-bigquery-") as tmp:
        log = Path(tmp) / "bigquery-emulator.log"
        emulator = start_bigquery_emulator(log, project=project)
        try:
            yield f"http://{emulator.address}"
        finally:
            emulator.stop()
            text = log.read_text(errors="replace")
            assert "download extension" not in text, text[-3000:]


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
