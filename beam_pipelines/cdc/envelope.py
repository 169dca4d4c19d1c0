"""Debezium change events (JSON, schemas disabled) -> ``Change`` records: plain Python, no Beam.

A message is one of:

- a change event ``{"before", "after", "source", "op", "ts_ms", ...}``, op ``c`` (insert),
  ``u`` (update), ``d`` (delete) or ``r`` (a row read by the initial snapshot);
- a tombstone (``null``), which follows a delete for Kafka log compaction: counted, skipped;
- a heartbeat (``{"ts_ms": ...}`` only, on the heartbeat topic): counted, skipped.

Anything else raises ``InvalidChange`` with a reason (the dead letter's) and a message that
says what, where and why: ``invalid_json``, ``invalid_envelope`` (not a change event, or one
missing what the job needs), ``unknown_table`` (not a captured table), ``invalid_value`` (a
column value that is not of the column's type).

The change's position is ``source.lsn``, the WAL position of the change itself: changes of one
row are in LSN order (a later transaction touching a row waits for the earlier one to commit),
so (table, primary key, LSN) identifies a change, and redeliveries repeat it exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping

import orjson

from streamforge.cdc.tables import SourceTable, typed_row
from streamforge.timeutil import millis_to_datetime

__all__ = ["HEARTBEAT", "OPS", "TOMBSTONE", "Change", "InvalidChange", "parse_change"]

OPS = {"c": "insert", "u": "update", "d": "delete", "r": "snapshot"}
TOMBSTONE, HEARTBEAT = "tombstone", "heartbeat"


class InvalidChange(ValueError):
    """A message that is not a usable change event; ``reason`` names the kind of problem."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Change:
    table: str
    op: str  # c, u, d or r
    key_names: tuple[str, ...]  # the table's primary key columns
    key: tuple[Any, ...]  # their values
    lsn: int
    tx_id: int | None
    source_ts: datetime  # commit time in the database (ms)
    snapshot: bool
    before: Mapping[str, Any] | None  # the row images as Debezium sent them
    after: Mapping[str, Any] | None
    row: Mapping[str, Any]  # the current image (after; before for a delete), typed
    previous: Mapping[str, Any] | None  # the before image of an update, typed

    @property
    def deleted(self) -> bool:
        return self.op == "d"

    @property
    def key_json(self) -> str:
        """The primary key as a JSON object, e.g. ``{"id":42}``: Debezium's record key."""
        return orjson.dumps(dict(zip(self.key_names, self.key))).decode()


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise InvalidChange("invalid_envelope", message)


def parse_change(payload: bytes, tables: Mapping[str, SourceTable], schema: str = "public") -> Change | str:
    """A ``Change``, or ``TOMBSTONE`` / ``HEARTBEAT``; raises ``InvalidChange``."""
    try:
        event = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise InvalidChange("invalid_json", f"not JSON: {exc}") from None
    if event is None:
        return TOMBSTONE
    _require(isinstance(event, dict), f"expected a change event (a JSON object), got {type(event).__name__}")
    if "op" not in event and set(event) <= {"ts_ms", "ts_us", "ts_ns"} and event:
        return HEARTBEAT
    op = event.get("op")
    _require(op in OPS, f"op: expected one of c, u, d, r, got {op!r}")
    source = event.get("source")
    _require(isinstance(source, dict), "source: missing or not an object")
    name = source.get("table")
    if source.get("schema") != schema or name not in tables:
        raise InvalidChange(
            "unknown_table",
            f"source: {source.get('schema')}.{name} is not a captured table "
            f"(known: {', '.join(f'{schema}.{t}' for t in tables)})",
        )
    table = tables[name]
    lsn, tx_id, ts_ms = source.get("lsn"), source.get("txId"), source.get("ts_ms")
    _require(
        isinstance(lsn, int) and not isinstance(lsn, bool) and lsn >= 0,
        f"source.lsn: expected a non-negative integer, got {lsn!r}",
    )
    _require(
        tx_id is None or (isinstance(tx_id, int) and not isinstance(tx_id, bool)),
        f"source.txId: expected an integer, got {tx_id!r}",
    )
    _require(
        isinstance(ts_ms, int) and not isinstance(ts_ms, bool) and ts_ms > 0,
        f"source.ts_ms: expected a positive integer (ms since the epoch), got {ts_ms!r}",
    )
    before, after = event.get("before"), event.get("after")
    image_name = "before" if op == "d" else "after"
    image = before if op == "d" else after
    _require(
        isinstance(image, dict),
        f"{image_name}: {'a' if op == 'd' else 'an'} {OPS[op]} needs the row image, got {image!r}",
    )
    _require(before is None or isinstance(before, dict), f"before: expected an object or null, got {before!r}")
    _require(after is None or isinstance(after, dict), f"after: expected an object or null, got {after!r}")
    missing = [k for k in table.primary_key if image.get(k) is None]
    _require(not missing, f"{image_name}: no value for the primary key column(s) {', '.join(missing)} of {name}")
    try:
        row = typed_row(table, image)
    except ValueError as exc:
        raise InvalidChange("invalid_value", f"{image_name}: {exc}") from None
    try:
        previous = typed_row(table, before) if op == "u" and before is not None else None
    except ValueError as exc:
        raise InvalidChange("invalid_value", f"before: {exc}") from None
    if op != "d":
        nulls = [c.name for c in table.columns if not c.nullable and c.name in row and row[c.name] is None]
        if nulls:
            raise InvalidChange("invalid_value", f"after: {name}.{nulls[0]} is NOT NULL in the source, got null")
    snapshot = source.get("snapshot")
    return Change(
        name,
        op,
        table.primary_key,
        tuple(row[k] for k in table.primary_key),
        lsn,
        tx_id,
        millis_to_datetime(ts_ms),
        snapshot not in (None, False, "false"),
        before,
        after,
        row,
        previous,
    )
