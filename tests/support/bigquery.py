"""Reading what the jobs wrote to the BigQuery emulator, next to what they wrote to DuckDB, and
putting files where a job's gs:// paths read them (the Cloud Storage emulator)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, Iterable

import duckdb
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery, storage

from beam_pipelines.common.warehouse import table_name
from streamforge.config import load_config
from streamforge.live.progress import read_job_progress
from streamforge.schemas import get_schema
from streamforge.topology import topology
from tests.support.cli import start_entry_point, wait_while_running

__all__ = [
    "RESULT_TABLES",
    "DuckDBWarehouse",
    "analytics_inputs",
    "bigquery_client",
    "columns_of",
    "compared",
    "start_streaming_job",
    "upload",
    "view_rows",
]

#: The analytics job's result tables -> their schemas.
RESULT_TABLES = {
    table_name(subject): subject
    for subject in ("session_aggregate", "revenue_per_minute", "revenue_by_category_region", "fraud_alert")
}

#: Columns stamped with the wall clock when a row is written: never equal between two runs.
PROCESSING_TIME = {"detected_at", "received_at", "ingested_at", "_ingested_at"}


def bigquery_client(address: str, project: str) -> bigquery.Client:
    """A client of the emulator at ``address`` (http://HOST:PORT), whatever the environment says."""
    return bigquery.Client(
        project=project, credentials=AnonymousCredentials(), client_options=ClientOptions(api_endpoint=address)
    )


def storage_client(address: str) -> storage.Client:
    return storage.Client(
        project="test", credentials=AnonymousCredentials(), client_options=ClientOptions(api_endpoint=address)
    )


def upload(address: str, bucket: str, folder: Path, prefix: str) -> str:
    """Every file below ``folder`` as gs://BUCKET/PREFIX/<relative path>; returns gs://BUCKET/PREFIX."""
    client = storage_client(address)
    target = client.lookup_bucket(bucket) or client.create_bucket(bucket)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        target.blob(f"{prefix}/{path.relative_to(folder)}").upload_from_filename(str(path))
    return f"gs://{bucket}/{prefix}"


def columns_of(subject: str, *, leave_out: Iterable[str] = ()) -> list[str]:
    """The schema's columns, less the processing-time ones and ``leave_out``."""
    skip = PROCESSING_TIME | set(leave_out)
    return [f["name"] for f in get_schema(subject).definition["fields"] if f["name"] not in skip]


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_plain(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _plain(v)) for k, v in value.items()))
    return value


def view_rows(client: bigquery.Client, dataset: str, relation: str, columns: list[str], where: str = "TRUE") -> list:
    """Sorted rows of ``columns`` of a table or view of the emulator's ``dataset`` (PROJECT.DATASET)."""
    names = ", ".join(f"`{c}`" for c in columns)
    result = client.query(f"SELECT {names} FROM `{dataset}.{relation}` WHERE {where}").result()
    return sorted((tuple(_plain(v) for v in row.values()) for row in result), key=repr)


class DuckDBWarehouse:
    """A DuckDB warehouse file, read-only, timestamps in UTC (as BigQuery's are)."""

    def __init__(self, path: Path):
        self.connection = duckdb.connect(str(path), read_only=True)
        self.connection.execute("SET TimeZone = 'UTC'")

    def rows(self, table: str, columns: list[str], where: str = "TRUE") -> list:
        names = ", ".join(f'"{c}"' for c in columns)
        result = self.connection.execute(f'SELECT {names} FROM "{table}" WHERE {where}').fetchall()
        return sorted((tuple(_plain(v) for v in row) for row in result), key=repr)

    def close(self) -> None:
        self.connection.close()


def compared(bigquery_rows: list, duckdb_rows: list) -> tuple[int, list]:
    """(rows, the differences as (only in BigQuery, only in DuckDB)) of two sorted row lists."""
    left, right = set(bigquery_rows), set(duckdb_rows)
    assert len(left) == len(bigquery_rows) and len(right) == len(duckdb_rows), "a row repeats"
    return len(bigquery_rows), [] if left == right else [
        sorted(left - right, key=repr)[:5],
        sorted(right - left, key=repr)[:5],
    ]


def start_streaming_job(job: str, inputs: list[str], warehouse: str, tmp: Path, env: dict[str, str]):
    """`streamforge run JOB INPUTS --warehouse W` streaming as a process of its own, returned once
    it reads (its progress file written): (process, progress file, log)."""
    progress, log = tmp / f"{job}-progress.json", tmp / f"{job}-job.log"
    process: subprocess.Popen = start_entry_point(
        "run", job, *inputs, "--warehouse", warehouse, "--progress-file", str(progress), log=log, env=env
    )
    wait_while_running(process, log, "the job to read", lambda: read_job_progress(progress))
    return process, progress, log


def analytics_inputs(project: str) -> list[str]:
    """`run all`'s options reading the analytics subscriptions `pubsub create` makes in ``project``."""
    config, options = load_config(), []
    for option, topic in (("--clickstream", config.topics.clickstream), ("--orders", config.topics.orders)):
        subscription = topology(config).subscription("analytics", topic).id
        options += [option, f"pubsub://projects/{project}/subscriptions/{subscription}"]
    return options
