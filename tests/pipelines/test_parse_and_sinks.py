"""The parse step under malformed input (property-based, through Beam), the clock-skew rule,
UserSessions without Beam, and the warehouse sinks' table definitions and row semantics."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

import apache_beam as beam
import duckdb
import orjson
import pyarrow as pa
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from beam_pipelines.common.io import InputSpec, SpecError, WarehouseSpec, parse_input, parse_warehouse
from beam_pipelines.common.parse import DedupMode, EventParser, ParseEvents
from beam_pipelines.common.warehouse import WriteTable, bigquery_row, create_table_sql
from beam_pipelines.jobs import build
from beam_pipelines.requests import JobRequest
from beam_pipelines.runner import local_runner_tuning, pipeline_options
from beam_pipelines.sessions.metrics import UserSessions
from streamforge.config import load_config
from streamforge.schemas import get_schema
from streamforge.timeutil import to_millis
from tests.support.reference import load, session_windows
from tests.support.samples import sample

VALID = get_schema("clickstream_event").to_json(sample("clickstream_event"))
payloads = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=100).map(str.encode),
    st.dictionaries(
        st.sampled_from(["event_id", "user_id", "event_type", "event_time", "price"]),
        st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1), st.text(max_size=20), st.floats(allow_nan=False)),
        max_size=5,
    ).map(orjson.dumps),
    st.integers(0, len(VALID)).map(lambda n: VALID[:n]),  # truncated
    st.just(VALID),
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(payloads, min_size=1, max_size=40), st.integers(1, 7), st.integers(1, 5))
def test_any_payloads_are_parsed_or_dead_lettered_never_lost(batch: list[bytes], batch_size: int, shards: int) -> None:
    valid_ids = set()
    for payload in batch:
        try:
            valid_ids.add(get_schema("clickstream_event").from_json(payload)["event_id"])
        except Exception:
            pass
    with local_runner_tuning(), beam.Pipeline(runner="FnApiRunner") as pipeline:
        batches = [batch[i : i + batch_size] for i in range(0, len(batch), batch_size)]
        parsed = (
            pipeline
            | beam.Create(batches)
            | ParseEvents(
                "clickstream",
                "test",
                DedupMode.GROUP,
                dedup_ttl=timedelta(hours=1),
                max_clock_skew=timedelta(days=3650),
                shards=shards,
            )
        )
        events = parsed.events | beam.FlatMap(lambda batch: batch)  # batch mode: lists of events
        assert_that(events | beam.Map(lambda e: e["event_id"]), equal_to(sorted(valid_ids)), label="events")
        dead = sum(1 for p in batch if not _valid(p))
        assert_that(parsed.dead_letters | beam.combiners.Count.Globally(), equal_to([dead]), label="dead letters")


def _valid(payload: bytes) -> bool:
    try:
        get_schema("clickstream_event").from_json(payload)
        return True
    except Exception:
        return False


def test_event_times_far_ahead_of_the_clock_are_dead_lettered() -> None:
    parser = EventParser("clickstream", "sessions", "Parse clickstream", timedelta(minutes=5))
    clock = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)
    ahead = get_schema("clickstream_event").to_json(
        sample("clickstream_event", event_time=clock + timedelta(minutes=6))
    )
    near = get_schema("clickstream_event").to_json(sample("clickstream_event", event_time=clock + timedelta(minutes=4)))
    event, rejected = parser.parse(ahead, to_millis(clock))
    assert event is None and rejected["reason"] == "future"
    assert "6m ahead of the pipeline clock" in rejected["error"] and rejected["event_id"]
    assert parser.parse(near, to_millis(clock))[1] is None


def test_user_sessions_merge_in_any_order_to_the_sql_sessions(default_run: Path) -> None:
    con = load(default_run)
    gap_ms = 30 * 60_000
    expected = {
        (u, s, n)
        for u, s, n in con.execute(
            f"SELECT user_id, epoch_ms(session_start), event_count FROM ({session_windows(con, gap_ms).sql_query()})"
        ).fetchall()
    }
    schema = get_schema("clickstream_event")
    events = [schema.from_json(line) for line in (default_run / "clickstream.jsonl").read_bytes().splitlines()]
    rng = random.Random(7)
    rng.shuffle(events)
    by_user: dict[str, list[UserSessions]] = {}
    for event in events:  # each user's events in 1-3 partial accumulators, merged in random order
        parts = by_user.setdefault(event["user_id"], [UserSessions(gap_ms) for _ in range(rng.randint(1, 3))])
        rng.choice(parts).add(event)
    found = set()
    for user, parts in by_user.items():
        rng.shuffle(parts)
        total = UserSessions(gap_ms)
        for part in parts:
            total.merge(part)
        found |= {(user, s.start_ms, s.event_count) for s in total.sessions}
    assert found == expected and len(found) > 10_000


def test_specs_are_checked(tmp_path: Path) -> None:
    (tmp_path / "c.jsonl").write_text("")
    assert parse_input(f"file://{tmp_path}/c.jsonl").bounded
    spec = parse_input("pubsub://projects/my-shop/subscriptions/clickstream-beam")
    assert (spec.kind, spec.is_subscription, spec.bounded) == ("pubsub", True, False)
    assert parse_warehouse("bigquery://my-shop.analytics") == WarehouseSpec("bigquery", "my-shop", "analytics")
    for bad in ("file:///nowhere.jsonl", f"file://{tmp_path}", "pubsub://clickstream", "kafka://x:1"):
        with pytest.raises(SpecError, match="--input"):
            parse_input(bad)
    for bad in ("duckdb://", "bigquery://nodataset", "sqlite:///x"):
        with pytest.raises(SpecError, match="--warehouse"):
            parse_warehouse(bad)


def test_duckdb_tables_follow_the_schemas_and_keys(tmp_path: Path) -> None:
    sql = create_table_sql(get_schema("fraud_alert"))
    assert '"related_event_ids" VARCHAR[] NOT NULL' in sql and 'PRIMARY KEY ("alert_id")' in sql
    assert '"total_revenue" DECIMAL(15,2) NOT NULL' in create_table_sql(get_schema("session_aggregate"))
    path = str(tmp_path / "w.duckdb")
    first = get_schema("session_aggregate").validate(sample("session_aggregate"))  # as the job's rows are
    later = {**first, "event_count": first["event_count"] + 1, "pane_timing": "LATE"}
    with local_runner_tuning(), beam.Pipeline(runner="FnApiRunner") as pipeline:
        (
            pipeline
            | beam.Create([first, later])
            | WriteTable(WarehouseSpec("duckdb", path=path), "session_aggregate", streaming=False)
        )
    rows = duckdb.connect(path).execute("SELECT event_count, pane_timing FROM user_sessions").fetchall()
    assert rows == [(first["event_count"] + 1, "LATE")]  # one row per session: the newer pane replaced it


def _session(user: str, start: datetime, end: datetime, events: int, pane: str = "ON_TIME") -> dict:
    row = get_schema("session_aggregate").validate(sample("session_aggregate"))  # as the job's rows are
    return {
        **row,
        "user_id": user,
        "session_id": f"{user}@{start:%H:%M}",  # as session_id() does: one id per user and start
        "session_start": start,
        "session_end": end,
        "event_count": events,
        "pane_timing": pane,
    }


def _write_sessions(path: str, rows: list[dict]) -> None:
    with local_runner_tuning(), beam.Pipeline(runner="FnApiRunner") as pipeline:
        (
            pipeline
            | beam.Create(rows)
            | WriteTable(WarehouseSpec("duckdb", path=path), "session_aggregate", streaming=False)
        )


def test_a_session_merged_into_an_earlier_start_supersedes_its_rows(tmp_path: Path) -> None:
    """A late click before a fired session's start joins it to a session that starts earlier,
    so under another session_id: SQL over the events sees one session, and so must the table.
    The row within the longer span goes, whichever arrives first (a replay of the older row
    writes nothing); another session of the user, and another user's, stay. BigQuery's
    ``user_sessions_current`` view (the same SQL, run here over every appended row) agrees."""
    from streamforge.warehouse_tables import TABLE_KEYS, current_view_sql

    t = lambda minute: datetime(2026, 11, 1, 8, 0, tzinfo=timezone.utc) + timedelta(minutes=minute)  # noqa: E731
    fired = _session("alice", t(10), t(12), 2)
    merged = _session("alice", t(8), t(12), 3, "LATE")  # a late click at 8 joined the session of 10-12
    later = _session("alice", t(50), t(55), 4)  # another session of alice's
    bob = _session("bob", t(9), t(11), 1)  # within alice's span, but bob's
    columns = "session_id, event_count"
    expected = [("alice@08:08", 3), ("alice@08:50", 4), ("bob@08:09", 1)]

    in_order = str(tmp_path / "in_order.duckdb")
    for rows in ([fired, later, bob], [merged]):  # the on-time panes, then the late pane
        _write_sessions(in_order, rows)
    replayed = str(tmp_path / "replayed.duckdb")
    for rows in ([merged, later, bob], [fired]):  # the older row arrives after the merged one
        _write_sessions(replayed, rows)
    one_bundle = str(tmp_path / "one_bundle.duckdb")
    _write_sessions(one_bundle, [fired, merged, later, bob])
    for path in (in_order, replayed, one_bundle):
        con = duckdb.connect(path)
        assert con.execute(f"SELECT {columns} FROM user_sessions ORDER BY 1").fetchall() == expected, path
        con.close()

    appended = duckdb.connect()  # BigQuery keeps every row it is sent; its view picks
    appended.execute(f"ATTACH '{in_order}' AS written (READ_ONLY)")
    appended.execute("CREATE TABLE user_sessions AS SELECT * FROM written.user_sessions LIMIT 0")
    for row in (fired, later, bob, merged, fired):  # the last one replayed
        appended.register("sent", pa.Table.from_pylist([row]))
        appended.execute("INSERT INTO user_sessions BY NAME SELECT * FROM sent")
    view = current_view_sql(TABLE_KEYS["session_aggregate"], "user_sessions")
    assert appended.execute(f"SELECT {columns} FROM ({view}) ORDER BY 1").fetchall() == expected


def test_bigquery_rows_and_table_options() -> None:
    row = bigquery_row(sample("fraud_alert"))
    assert isinstance(row["event_time"], str) and row["event_time"].endswith("Z")
    pipeline = beam.Pipeline()
    (
        pipeline
        | beam.Create([sample("fraud_alert")])
        | WriteTable(WarehouseSpec("bigquery", "my-shop", "analytics"), "fraud_alert", streaming=True)
    )

    def applied(part):
        yield part
        for child in part.parts:
            yield from applied(child)

    (transform,) = [
        t.transform for t in applied(pipeline.transforms_stack[0]) if isinstance(t.transform, beam.io.WriteToBigQuery)
    ]
    assert transform.table_reference.tableId == "fraud_alerts"
    assert transform.additional_bq_parameters == {
        "timePartitioning": {"type": "DAY", "field": "event_time"},
        "clustering": {"fields": ["alert_type", "user_id"]},
    }
    assert transform.method == beam.io.WriteToBigQuery.Method.STREAMING_INSERTS
    # the tables are the plan's (or `streamforge warehouse create`'s): a job never creates one
    assert transform.create_disposition == beam.io.BigQueryDisposition.CREATE_NEVER


def test_pubsub_messages_are_decoded_by_their_encoding_attribute() -> None:
    from apache_beam.io.gcp.pubsub import PubsubMessage

    from beam_pipelines.common.parse import payload_and_encoding

    parser = EventParser("clickstream", "sessions", "Parse clickstream", timedelta(minutes=5))
    clicks, orders = get_schema("clickstream_event"), get_schema("order_event")
    record = clicks.validate(sample("clickstream_event"))
    now = to_millis(record["event_time"])
    for encoding, data in (
        ("json", clicks.to_json(record)),
        ("avro", clicks.to_avro(record)),
        ("confluent", clicks.to_confluent(record)),
    ):
        payload, found, received = payload_and_encoding(PubsubMessage(data, {"encoding": encoding}))
        assert (payload, found, received) == (data, encoding, None)
        assert parser.parse(payload, now, found) == (record, None)
    assert payload_and_encoding(PubsubMessage(b"{}", None)) == (b"{}", "json", None)
    assert payload_and_encoding(b"{}") == (b"{}", "json", None)
    # the receipt: the ingest function's received_at; a publish time says nothing (a replay)
    published = datetime(2026, 11, 1, 8, 0, 5, tzinfo=timezone.utc)
    assert (
        payload_and_encoding(PubsubMessage(b"{}", {"received_at": "2026-11-01T08:00:00.000Z"}, publish_time=published))[
            2
        ]
        == to_millis(published) - 5000
    )
    assert payload_and_encoding(PubsubMessage(b"{}", {}, publish_time=published))[2] is None
    assert payload_and_encoding(PubsubMessage(b"{}", {"received_at": "soon"}))[2] is None
    assert payload_and_encoding((b"{}", "avro", -1)) == (b"{}", "avro", None)
    # an order in the Confluent format on the clickstream: the schema id says it is not a click
    _, rejected = parser.parse(orders.to_confluent(sample("order_event")), now, "confluent")
    assert rejected["reason"] == "invalid_avro" and "expected clickstream_event" in rejected["error"]
    assert rejected["payload_encoding"] == "base64"
    _, rejected = parser.parse(b"<xml/>", now, "xml")
    assert rejected["reason"] == "invalid_encoding" and "'xml' is not one of json, avro, confluent" in rejected["error"]


def test_on_dataflow_pubsub_drops_redeliveries_by_id_label() -> None:
    """Dataflow streaming reads with id_label=event_id (no dedup step); elsewhere the parse step
    keeps per-id state. Checked on the built pipeline (nothing runs)."""
    request = JobRequest(
        "sessions",
        {"clickstream": InputSpec("pubsub", "projects/my-shop/subscriptions/clicks", True)},
        WarehouseSpec("bigquery", "my-shop", "analytics"),
        load_config(),
    )
    for args, id_label, dedup_step in (
        (["--runner", "DataflowRunner", "--project", "my-shop"], "event_id", False),
        ([], None, True),
    ):
        pipeline = beam.Pipeline(options=pipeline_options(request, args), runner="DirectRunner")
        build(pipeline, request)
        labels = [t.full_label for t in _transforms(pipeline)]
        (read,) = [t.transform for t in _transforms(pipeline) if t.full_label == "Read clickstream/Read from Pub/Sub"]
        source = read._source
        assert source.id_label == id_label and source.with_attributes and source.timestamp_attribute == "event_time"
        assert any("Drop duplicates" in label for label in labels) == dedup_step
        assert isinstance(pipeline.options, PipelineOptions) and pipeline.options.view_as(StandardOptions).streaming


def _transforms(pipeline: beam.Pipeline) -> list:
    found: list = []

    class Visitor(beam.pipeline.PipelineVisitor):
        def visit_transform(self, node) -> None:
            found.append(node)

        def enter_composite_transform(self, node) -> None:
            found.append(node)

    pipeline.visit(Visitor())
    return found
