"""`streamforge run all` streaming from a real Pub/Sub emulator into DuckDB, alerts published back.

The job runs as its own process, as an operator would start it; events carry wall-clock event
times. The local feed's watermark trails the newest event time it has read
(beam_pipelines/local/feed.py), so a background publisher keeps both streams moving, as real
traffic would, and the session gap is cut to a few seconds so that sessions close while the
test waits (revenue's one-minute windows are checked by tests/pipelines/test_local_streaming.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
import pytest

from streamforge.schemas import get_schema
from streamforge.timeutil import format_timestamp
from tests.support.cli import STREAMFORGE, entry_point_env
from tests.support.pubsub import pull_messages
from tests.support.samples import sample

pytestmark = [pytest.mark.pubsub, pytest.mark.slow]


def _publish(
    publisher: Any,
    topic: str,
    subject: str,
    record: dict[str, Any] | None = None,
    raw: bytes | None = None,
    encoding: str = "json",
):
    """As the simulator and the ingest function publish: event_id, event_time and encoding attributes."""
    if raw is not None:
        return publisher.publish(topic, raw, event_time=format_timestamp(datetime.now(timezone.utc)), encoding=encoding)
    schema = get_schema(subject)
    data = {"json": schema.to_json, "avro": schema.to_avro, "confluent": schema.to_confluent}[encoding](record)
    return publisher.publish(
        topic, data, event_id=record["event_id"], event_time=format_timestamp(record["event_time"]), encoding=encoding
    )


def test_streaming_job_reads_pubsub_writes_duckdb_and_publishes_alerts(pubsub: str, tmp_path: Path) -> None:
    from google.cloud import pubsub_v1

    project = f"test-{uuid.uuid4().hex[:8]}"
    os.environ["PUBSUB_EMULATOR_HOST"] = pubsub  # the clients below read it
    try:
        publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
        topics = {
            name: publisher.create_topic(name=publisher.topic_path(project, name)).name
            for name in ("clickstream", "orders", "fraud-alerts", "dead-letter")
        }
        subscriptions = {
            name: subscriber.create_subscription(
                name=subscriber.subscription_path(project, f"{name}-test"), topic=topics[name]
            ).name
            for name in topics
        }
        config = tmp_path / "fast.toml"
        config.write_text('[sessions]\ngap = "3s"\nallowed_lateness = "0s"\n[pipelines]\nlateness_margin = "1s"\n')
        warehouse = tmp_path / "warehouse.duckdb"
        job = subprocess.Popen(
            [
                str(STREAMFORGE),
                "--config",
                str(config),
                "run",
                "all",
                "--clickstream",
                f"pubsub://{subscriptions['clickstream']}",
                "--orders",
                f"pubsub://{subscriptions['orders']}",
                "--warehouse",
                f"duckdb://{warehouse}",
                "--alerts-topic",
                topics["fraud-alerts"],
                "--dead-letter-topic",
                topics["dead-letter"],
                "--raw-events",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=entry_point_env(PUBSUB_EMULATOR_HOST=pubsub),
        )
        live = threading.Event()
        traffic = threading.Thread(target=_keep_alive, args=(publisher, topics, live), daemon=True)
        traffic.start()
        try:
            now = datetime.now(timezone.utc).replace(microsecond=0)
            clicks = [
                sample("clickstream_event", event_id=f"c{i}", user_id="ada", event_time=now + timedelta(seconds=i))
                for i in range(3)
            ]
            orders = [
                sample(
                    "order_event",
                    event_id=f"o{i}",
                    order_id=f"O{i}",
                    user_id="fay",
                    event_time=now + timedelta(seconds=i),
                    status="CREATED",
                )
                for i in range(3)
            ]
            futures = [
                _publish(publisher, topics["clickstream"], "clickstream_event", c, encoding=encoding)
                for c, encoding in zip(clicks, ("json", "avro", "confluent"))
            ]
            futures.append(_publish(publisher, topics["clickstream"], "clickstream_event", clicks[0]))  # a redelivery
            futures.append(_publish(publisher, topics["clickstream"], "clickstream_event", raw=b'{"event_id": 42'))
            futures.append(_publish(publisher, topics["orders"], "order_event", raw=b"\x00\x01\xff", encoding="avro"))
            futures += [_publish(publisher, topics["orders"], "order_event", o) for o in orders]
            for future in futures:
                future.result(timeout=30)

            alerts = pull_messages(subscriber, subscriptions["fraud-alerts"], count=1, timeout=120)
            dead = pull_messages(subscriber, subscriptions["dead-letter"], count=2, timeout=60)
            time.sleep(8)  # the session (3 s gap after the last click) closes on the wall-clock watermark
        finally:
            live.set()
            traffic.join()
            job.send_signal(signal.SIGINT)
            try:
                stdout, stderr = job.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                job.kill()
                stdout, stderr = job.communicate()
        assert job.returncode == 0, stdout + stderr
        (alert,) = alerts
        assert alert["data"]["alert_type"] == "RAPID_ORDERS" and alert["data"]["user_id"] == "fay"
        assert alert["attributes"]["alert_id"] == alert["data"]["alert_id"]
        assert sorted((d["data"]["reason"], d["attributes"]["pipeline"]) for d in dead) == [
            ("invalid_avro", "all"),
            ("invalid_json", "all"),
        ]

        con = duckdb.connect(str(warehouse), read_only=True)
        sessions = con.execute(
            "SELECT user_id, event_count, pane_timing FROM user_sessions WHERE user_id = 'ada'"
        ).fetchall()
        assert sessions == [("ada", 3, "ON_TIME")]  # JSON, Avro and Confluent clicks; the redelivery counted once
        assert con.execute("SELECT alert_type, user_id FROM fraud_alerts").fetchall() == [("RAPID_ORDERS", "fay")]
        assert sorted(con.execute("SELECT reason, payload, payload_encoding FROM dead_letter").fetchall()) == [
            ("invalid_avro", "AAH/", "base64"),
            ("invalid_json", '{"event_id": 42', "utf8"),
        ]
        # --raw-events: each valid event once, whatever its encoding (what the daily batch reads)
        assert sorted(con.execute("SELECT event_id FROM clickstream_events WHERE user_id = 'ada'").fetchall()) == [
            ("c0",),
            ("c1",),
            ("c2",),
        ]
        assert sorted(con.execute("SELECT event_id, status FROM order_events WHERE user_id = 'fay'").fetchall()) == [
            (f"o{i}", "CREATED") for i in range(3)
        ]
        rows, ids = con.execute(
            "SELECT count(*), count(DISTINCT event_id) FROM clickstream_events WHERE user_id = 'bob'"
        ).fetchone()
        assert rows == ids > 0  # the keep-alive traffic too, each once
    finally:
        del os.environ["PUBSUB_EMULATOR_HOST"]


def _keep_alive(publisher: Any, topics: dict[str, str], stop: threading.Event) -> None:
    """A click by another shopper and a shipment every 0.3 s (no rule or revenue row reads them)."""
    n = 0
    while not stop.wait(0.3):
        at = datetime.now(timezone.utc)
        _publish(
            publisher,
            topics["clickstream"],
            "clickstream_event",
            sample("clickstream_event", event_id=f"bob-{n}", user_id="bob", event_time=at),
        )
        _publish(
            publisher,
            topics["orders"],
            "order_event",
            sample(
                "order_event", event_id=f"ship-{n}", order_id=f"S{n}", user_id="gus", event_time=at, status="SHIPPED"
            ),
        )
        n += 1
