"""`run all` streaming from the Pub/Sub emulator into BigQuery (the emulator) by streaming
inserts, as on Dataflow but for the runner, with late panes and replays; its ``<table>_current``
views against the same events run in batch into DuckDB: the same rows, to the cent.

Late panes: once the job has taken the simulation and written its on-time panes, events of
windows that already fired (within the allowed lateness) are published: a minute's revenue
and a user's session fire again. Replays: rows the job wrote are inserted once more, as a
retried insert whose first answer was lost inserts them; the emulator, like BigQuery without
insertId, keeps both.
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import orjson
import pytest

from beam_pipelines.requests import analytics_request
from beam_pipelines.runner import pipeline_options, run
from streamforge.config import load_config
from streamforge.schemas import InvalidEvent, get_schema
from streamforge.timeutil import format_timestamp, parse_timestamp
from tests.support.bigquery import RESULT_TABLES, DuckDBWarehouse, bigquery_client, columns_of, compared, view_rows
from tests.support.cli import run_entry_point

pytestmark = [pytest.mark.bigquery, pytest.mark.pubsub, pytest.mark.slow, pytest.mark.timeout(600)]

SIMULATION = ("--duration", "20m", "--seed", "5", "--malformed", "0.01", "--duplicates", "0.01")
#: Sessions close after a minute here, so that they fire (and fire again) while the test runs.
#: Quiet inputs do not move event time on with the clock: the late events must stay within the
#: allowed lateness however long the machine takes to send them (else the job, rightly,
#: dead-letters them as too late, and the batch does not).
CONFIG = '[sessions]\ngap = "1m"\n\n[local_streaming]\nidle_input = "30m"\n'


def _events(path: Path, subject: str) -> list[dict]:
    """The valid events of a simulated file, as JSON documents (the malformed ones left out)."""
    schema, events = get_schema(subject), []
    for line in path.read_bytes().splitlines():
        try:
            schema.from_json(line)
        except InvalidEvent:
            continue
        events.append(orjson.loads(line))
    return events


def _late_events(files: Path) -> tuple[list[dict], list[dict], datetime]:
    """Clicks extending the sessions of users last seen 4-9 minutes before the end, clicks just
    before the sessions of users first seen then, and PAID orders of new buyers in the minute 6
    minutes before the end: windows that fired on time, still within the 10 minutes of allowed
    lateness. Returns (clicks, orders, the late minute)."""
    clicks, orders = (
        _events(files / "clickstream.jsonl", "clickstream_event"),
        _events(files / "orders.jsonl", "order_event"),
    )
    end = max(parse_timestamp(e["event_time"]) for e in clicks)
    last: dict[str, dict] = {}
    for click in sorted(clicks, key=lambda c: parse_timestamp(c["event_time"])):
        last[click["user_id"]] = click  # the user's latest click
    quiet = [
        c
        for c in last.values()
        if end - timedelta(minutes=9) < parse_timestamp(c["event_time"]) < end - timedelta(minutes=4)
    ]
    late_clicks = [
        {
            **click,
            "event_id": f"late-click-{n}",
            "event_time": format_timestamp(parse_timestamp(click["event_time"]) + timedelta(seconds=20)),
        }
        for n, click in enumerate(sorted(quiet, key=lambda c: c["event_id"])[:20])
    ]
    # and clicks 20 s before the first click of users first seen 4-9 minutes before the end: each
    # joins a fired session to one that starts earlier, under another session_id (superseded)
    first: dict[str, dict] = {}
    for click in sorted(clicks, key=lambda c: parse_timestamp(c["event_time"]), reverse=True):
        first[click["user_id"]] = click
    newcomers = [
        c
        for c in first.values()
        if end - timedelta(minutes=9) < parse_timestamp(c["event_time"]) < end - timedelta(minutes=4)
    ]
    late_clicks += [
        {
            **click,
            "event_id": f"early-click-{n}",
            "event_time": format_timestamp(parse_timestamp(click["event_time"]) - timedelta(seconds=20)),
        }
        for n, click in enumerate(sorted(newcomers, key=lambda c: c["event_id"])[:10])
    ]
    minute = (end - timedelta(minutes=6)).replace(second=0, microsecond=0)
    paid = [o for o in orders if o["status"] == "PAID" and not o.get("is_first_order")][:5]
    late_orders = [
        {
            **order,
            "event_id": f"late-order-{n}",
            "order_id": f"LATE-{n}",
            "user_id": f"late-buyer-{n}",
            "event_time": format_timestamp(minute + timedelta(seconds=10 + n)),
        }
        for n, order in enumerate(paid)
    ]
    assert len(late_clicks) >= 5 + 5 and len(late_orders) == 5
    return late_clicks, late_orders, minute


@pytest.fixture(scope="module")
def streamed(pubsub: str, google_cloud, tmp_path_factory: pytest.TempPathFactory):
    from google.cloud import pubsub_v1

    tmp = tmp_path_factory.mktemp("bigquery-streaming")
    config_file = tmp / "config.toml"
    config_file.write_text(CONFIG)
    project = f"stream-{uuid.uuid4().hex[:8]}"
    emulators = {"PUBSUB_EMULATOR_HOST": pubsub, "BIGQUERY_EMULATOR_HOST": google_cloud.bigquery}
    saved = {name: os.environ.get(name) for name in emulators}
    os.environ.update(emulators)  # the job runs in this process, as `streamforge run` would
    try:
        files = tmp / "files"
        run_entry_point("pubsub", "create", "--project", project, "--no-cdc", env=emulators)
        run_entry_point("simulate", "--output", f"file://{files}", *SIMULATION, "-q")
        run_entry_point("simulate", "--output", f"pubsub://{project}", *SIMULATION, "-q", env=emulators)
        published = sum(sum(1 for _ in (files / f"{s}.jsonl").open("rb")) for s in ("clickstream", "orders"))
        late_clicks, late_orders, late_minute = _late_events(files)
        for stream, events in (("clickstream", late_clicks), ("orders", late_orders)):  # the batch reads them too
            with (files / f"{stream}.jsonl").open("ab") as out:
                out.write(b"".join(orjson.dumps(e) + b"\n" for e in events))

        client = bigquery_client(google_cloud.bigquery, project)
        dataset = f"{project}.analytics"
        publisher = pubsub_v1.PublisherClient()
        state = {"taken": 0, "late_sent": 0.0, "polled": 0.0, "done": 0.0}

        def count(where: str, table: str = "revenue_per_minute") -> int:
            (row,) = client.query(f"SELECT count(*) AS n FROM `{dataset}.{table}` WHERE {where}").result()
            return row["n"]

        minute = f"window_start = '{format_timestamp(late_minute)}'"

        def progress(counts) -> None:
            state["taken"] = sum(c.acked for c in counts.values())
            if not state["late_sent"] and state["taken"] >= published and count(minute) > 0:  # fired on time
                for stream, events in (("clickstream", late_clicks), ("orders", late_orders)):
                    topic = publisher.topic_path(project, stream)
                    for event in events:
                        publisher.publish(
                            topic, orjson.dumps(event), event_id=event["event_id"], event_time=event["event_time"]
                        ).result(timeout=30)
                state["late_sent"] = time.monotonic()
            elif state["late_sent"] and not state["done"] and time.monotonic() - state["polled"] > 2:
                state["polled"] = time.monotonic()  # until the late panes are written
                if count(f"{minute} AND pane_index > 0") and count("pane_timing = 'LATE'", "user_sessions"):
                    state["done"] = time.monotonic()

        started = time.monotonic()
        config = load_config(config_file)
        request = analytics_request(
            "all",
            config,
            warehouse=f"bigquery://{dataset}",
            clickstream=f"pubsub://projects/{project}/subscriptions/streamforge-analytics-clickstream",
            orders=f"pubsub://projects/{project}/subscriptions/streamforge-analytics-orders",
        )
        report = run(
            request,
            pipeline_options(request),
            should_stop=lambda: (
                (state["done"] and time.monotonic() - state["done"] > 5) or time.monotonic() - started > 300
            ),
            on_progress=progress,
        )
        assert state["done"], f"the job took {state['taken']} of {published} messages and the late ones"
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    duckdb_file = tmp / "warehouse.duckdb"
    batch = run_entry_point(
        "--config",
        str(config_file),
        "run",
        "all",
        "--input",
        f"file://{files}",
        "--warehouse",
        f"duckdb://{duckdb_file}",
        timeout=600,
    )
    local = DuckDBWarehouse(duckdb_file)
    yield {
        "client": client,
        "dataset": dataset,
        "duckdb": local,
        "report": report,
        "batch": batch.stdout,
        "late_minute": late_minute,
    }
    local.close()


def _compare(streamed, table: str, subject: str) -> int:
    columns = columns_of(subject, leave_out=("pane_index", "pane_timing"))  # batch fires one ON_TIME pane
    rows, differences = compared(
        view_rows(streamed["client"], streamed["dataset"], f"{table}_current", columns),
        streamed["duckdb"].rows(table, columns),
    )
    assert differences == [], table
    return rows


def test_late_panes_are_new_rows_and_the_current_views_equal_duckdb(streamed) -> None:
    client, dataset = streamed["client"], streamed["dataset"]
    minute = format_timestamp(streamed["late_minute"])
    panes = view_rows(
        client, dataset, "revenue_per_minute", ["pane_index", "order_count"], f"window_start = '{minute}'"
    )
    assert len(panes) >= 2 and panes[-1][0] >= 1  # the on-time pane, then a late one with everything
    late_sessions = view_rows(client, dataset, "user_sessions", ["session_id"], "pane_timing = 'LATE'")
    assert len(late_sessions) >= 5
    for table, subject in RESULT_TABLES.items():
        assert _compare(streamed, table, subject) > 0 or table == "fraud_alerts"
    assert len(view_rows(client, dataset, "user_sessions", ["session_id"])) > len(
        view_rows(client, dataset, "user_sessions_current", ["session_id"])
    )
    # sessions a late click joined to an earlier start: their ids are gone from the view, as SQL sees them
    written = {row[0] for row in view_rows(client, dataset, "user_sessions", ["session_id"])}
    current = {row[0] for row in view_rows(client, dataset, "user_sessions_current", ["session_id"])}
    assert len(written - current) >= 5


def test_replayed_rows_change_no_current_view(streamed) -> None:
    client, dataset = streamed["client"], streamed["dataset"]
    for table in RESULT_TABLES:
        rows = [dict(r) for r in client.query(f"SELECT * FROM `{dataset}.{table}` LIMIT 20").result()]
        if rows:
            errors = client.insert_rows(client.get_table(f"{dataset}.{table}"), rows)  # a retried insert, once more
            assert errors == []
    for table, subject in RESULT_TABLES.items():
        _compare(streamed, table, subject)


def test_every_message_is_accounted_for_and_dead_letters_match(streamed) -> None:
    report = streamed["report"]
    dead = 0
    for stream in ("clickstream", "orders"):
        read, unique, dead_lettered, duplicates = report.accounting(stream)
        assert read == unique + dead_lettered + duplicates and dead_lettered > 0 and duplicates > 0
        dead += dead_lettered
    columns = columns_of("dead_letter", leave_out=("source",))  # a subscription here, a file there
    in_bigquery = view_rows(streamed["client"], streamed["dataset"], "dead_letter", columns)
    assert len(in_bigquery) == dead
    rows, differences = compared(in_bigquery, streamed["duckdb"].rows("dead_letter", columns))
    assert differences == []
