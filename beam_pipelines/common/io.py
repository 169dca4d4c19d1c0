"""Where a job reads and writes: the ``--input`` and ``--warehouse`` URLs, and the readers.

- ``file://PATH``: a JSONL file (or a glob). Bounded: the job runs in batch mode.
- ``pubsub://projects/P/subscriptions/S`` or ``pubsub://projects/P/topics/T``: unbounded;
  event time comes from the ``event_time`` attribute the producers set. Reading a topic
  makes Beam create a temporary subscription.
- ``bigquery://PROJECT.DATASET`` or ``duckdb:///ABS/PATH`` (``duckdb://rel/path``): the
  warehouse (see warehouse.py).

Readers yield each message's payload as bytes, untouched: decoding, validation and dead
letters are the parse step's job.
"""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass
from pathlib import Path

import apache_beam as beam
from apache_beam.coders import BytesCoder

__all__ = ["InputSpec", "ReadMessages", "SpecError", "WarehouseSpec", "parse_input", "parse_warehouse"]

_PUBSUB = re.compile(r"^pubsub://(projects/[a-z][-a-z0-9]{4,28}[a-z0-9]/(subscriptions|topics)/[A-Za-z][-\w.~+%]{2,254})$")
_BIGQUERY = re.compile(r"^bigquery://([a-z][-a-z0-9:.]{4,62}[a-z0-9])\.([A-Za-z_][A-Za-z0-9_]{0,1023})$")


class SpecError(ValueError):
    """An --input or --warehouse value that cannot be used; the message says why."""


@dataclass(frozen=True)
class InputSpec:
    kind: str  # "file" or "pubsub"
    location: str  # a path or glob; a subscription or topic path
    is_subscription: bool = False

    @property
    def bounded(self) -> bool:
        return self.kind == "file"

    def __str__(self) -> str:
        return f"{self.kind}://{self.location}"


@dataclass(frozen=True)
class WarehouseSpec:
    kind: str  # "bigquery" or "duckdb"
    project: str = ""
    dataset: str = ""
    path: str = ""

    def __str__(self) -> str:
        return f"bigquery://{self.project}.{self.dataset}" if self.kind == "bigquery" else f"duckdb://{self.path}"


def parse_input(url: str, option: str = "--input") -> InputSpec:
    """An input URL, checked: a file input must match at least one file."""
    if url.startswith("file://"):
        path = url[len("file://"):]
        if not path:
            raise SpecError(f"{option} {url}: no path after file://")
        if not glob.glob(path):
            raise SpecError(f"{option} {url}: no such file")
        if Path(path).is_dir():
            raise SpecError(f"{option} {url}: is a directory; name the JSONL file (only `run all` takes a directory)")
        return InputSpec("file", path)
    if url.startswith("pubsub://"):
        match = _PUBSUB.match(url)
        if not match:
            raise SpecError(f"{option} {url}: expected pubsub://projects/PROJECT/subscriptions/NAME or pubsub://projects/PROJECT/topics/NAME")
        return InputSpec("pubsub", match.group(1), is_subscription=match.group(2) == "subscriptions")
    raise SpecError(f"{option} {url}: expected file://PATH or pubsub://projects/P/subscriptions/S (or /topics/T)")


def parse_warehouse(url: str) -> WarehouseSpec:
    if url.startswith("duckdb://"):
        path = url[len("duckdb://"):]
        if path in ("", "/") or path.endswith("/"):
            raise SpecError(f"--warehouse {url}: expected duckdb:///ABSOLUTE/PATH or duckdb://RELATIVE/PATH of a database file")
        return WarehouseSpec("duckdb", path=path)
    if url.startswith("bigquery://"):
        match = _BIGQUERY.match(url)
        if not match:
            raise SpecError(f"--warehouse {url}: expected bigquery://PROJECT.DATASET")
        return WarehouseSpec("bigquery", project=match.group(1), dataset=match.group(2))
    raise SpecError(f"--warehouse {url}: expected bigquery://PROJECT.DATASET or duckdb:///PATH")


class ReadMessages(beam.PTransform):
    """The raw payloads (bytes) of one input."""

    def __init__(self, spec: InputSpec, *, use_id_label: bool = False):
        super().__init__()
        self.spec = spec
        self.use_id_label = use_id_label

    def expand(self, pbegin):
        if self.spec.kind == "file":
            return pbegin | "Read lines" >> beam.io.ReadFromText(self.spec.location, coder=BytesCoder())
        where = {"subscription": self.spec.location} if self.spec.is_subscription else {"topic": self.spec.location}
        return pbegin | "Read from Pub/Sub" >> beam.io.ReadFromPubSub(
            **where,
            timestamp_attribute="event_time",
            # Dataflow drops redeliveries by this attribute; elsewhere the parse step deduplicates.
            id_label="event_id" if self.use_id_label else None,
        )
