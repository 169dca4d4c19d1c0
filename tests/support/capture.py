"""`streamforge cdc run` as a process, started and stopped the way an operator would."""

from __future__ import annotations

import signal
import subprocess
import uuid
from pathlib import Path
from typing import Any

import psycopg

from tests.support.cli import STREAMFORGE, entry_point_env

__all__ = [
    "PERSONAL",
    "ROLE_PASSWORD",
    "as_user",
    "new_role",
    "prepare",
    "source_rows",
    "start_capture",
    "stop_capture",
    "summary_row",
]

#: The customers' columns the connector hashes (streamforge/cdc/debezium/application.properties).
PERSONAL = ("email", "full_name")


#: The password of the roles ``new_role`` makes (the test cluster trusts loopback; Debezium's
#: JDBC offset store insists on one, as production has).
ROLE_PASSWORD = "test-role-password"


def as_user(url: str, user: str, password: str | None = None) -> str:
    """The test cluster's URL ``url`` (as postgres) for another user (trust authentication)."""
    return url.replace("postgresql://postgres@", f"postgresql://{user}{f':{password}' if password else ''}@")


def new_role(url: str) -> str:
    """A login role of its own (roles belong to the whole cluster, which the tests share)."""
    name = f"debezium_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as con:
        con.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{ROLE_PASSWORD}'")
    return name


def prepare(url: str, user: str = "postgres") -> None:
    """``streamforge cdc setup`` as the tables' owner: the publication and the heartbeat table,
    which the production properties leave to the owner (the captured tables must exist)."""
    subprocess.run(
        [str(STREAMFORGE), "cdc", "setup", "--database", url, "--user", user],
        check=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        env=entry_point_env(),
    )


def start_capture(url: str, output: str, offsets: Path | str, *, owner: bool = True, **env: str) -> subprocess.Popen:
    """The connector on database ``url`` publishing to ``output``, offsets in ``offsets`` (a file,
    or ``database``: the JDBC store of the production properties). As the tables' owner
    (``owner``), `cdc setup` is run first; otherwise the owner must have run it."""
    if owner:
        prepare(url)
    return subprocess.Popen(
        [str(STREAMFORGE), "cdc", "run", "--database", url, "--output", output, "--offsets", str(offsets), "--quiet"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=entry_point_env(**env),
    )


def stop_capture(process: subprocess.Popen, sig: int = signal.SIGTERM) -> int:
    """Send ``sig`` and return the exit code; a stop that hangs fails (the JVM is killed, never left behind)."""
    process.send_signal(sig)
    try:
        return process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError(f"cdc run did not stop within 60 s of {signal.Signals(sig).name}") from None


def summary_row(stdout: str) -> list[int]:
    """The numbers of `run cdc`'s summary table (read, changes, redelivered, tombstones,
    heartbeats, dead-lettered, then applied and stale into DuckDB, or appended into BigQuery)."""
    for line in stdout.splitlines():
        cells = [c.strip().replace(",", "") for c in line.strip("│ ").split("│")]
        if len(cells) in (7, 8) and all(c.isdigit() for c in cells):
            return [int(c) for c in cells]
    raise AssertionError(f"no summary row in:\n{stdout}")


def source_rows(pg: Any, table: str, offsets: Path) -> tuple[list[str], list[tuple]]:
    """A source table's columns and rows as a replica must hold them: the personal columns as
    PostgreSQL hashes them (hex SHA-256 of the salt, then the value) with the salt the capture
    with ``offsets`` used, which it kept beside them."""
    salt = (offsets.parent / "pii-salt").read_text().strip()
    names = [
        r[0]
        for r in pg.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s ORDER BY ordinal_position",
            (table,),
        )
    ]
    expected = ", ".join(
        f"encode(sha256(convert_to(%(salt)s || {c}, 'UTF8')), 'hex')" if table == "customers" and c in PERSONAL else c
        for c in names
    )
    return names, pg.execute(f"SELECT {expected} FROM {table} ORDER BY id", {"salt": salt}).fetchall()
