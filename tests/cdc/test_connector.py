"""`streamforge cdc run` and `cdc workload`: the connector properties, the published messages, the workload."""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from streamforge.cdc.config import ConfigError, DatabaseURL, DebeziumServerConfig, parse_properties
from streamforge.cdc.lifecycle import ORDER_TRANSITIONS
from tests.support.capture import start_capture, stop_capture
from tests.support.cli import run_cli, run_entry_point


def test_the_local_engine_uses_the_production_connector_properties(tmp_path: Path) -> None:
    config = DebeziumServerConfig.load()
    raw = config.properties
    db = DatabaseURL.parse("postgresql://shop:s3cret@127.0.0.1:6543/shopdb")
    embedded = config.embedded_properties(db, tmp_path / "offsets.dat", env={"CDC_PII_SALT": "ab" * 16})
    for key, value in raw.items():  # every connector property of the file, as it is (the salt in its name)
        short = key.removeprefix("debezium.source.").replace("${CDC_PII_SALT}", "ab" * 16)
        if key.startswith("debezium.source.") and not short.startswith(("database.", "offset.storage")):
            assert embedded[short] == value or "${" in value, short
    assert (embedded["database.hostname"], embedded["database.port"], embedded["database.password"]) == (
        "127.0.0.1",
        "6543",
        "s3cret",
    )
    assert embedded["offset.storage"].endswith("FileOffsetBackingStore")
    assert embedded["plugin.name"] == "pgoutput" and embedded["decimal.handling.mode"] == "string"
    assert embedded["publication.autocreate.mode"] == "disabled" and embedded["converter.schemas.enable"] == "false"
    assert embedded["heartbeat.action.query"].startswith("UPDATE public.debezium_heartbeat SET")
    # with the production offset store: the file's JDBC properties, filled from the connection
    jdbc = config.embedded_properties(db, None, state_dir=tmp_path, env={"CDC_PII_SALT": "ab" * 16})
    assert jdbc["offset.storage"] == "io.debezium.storage.jdbc.offset.JdbcOffsetBackingStore"
    assert jdbc["offset.storage.jdbc.connection.url"] == "jdbc:postgresql://127.0.0.1:6543/shopdb"
    assert (jdbc["offset.storage.jdbc.connection.user"], jdbc["offset.storage.jdbc.connection.password"]) == (
        "shop",
        "s3cret",
    )
    assert config.topic("public.orders") == "cdc.public.orders" and config.ordering_enabled
    assert "s3cret" not in str(db) and "s3cret" not in repr(config)
    # the production file reads its secrets from the environment, never from the file
    assert raw["debezium.source.database.password"].startswith("${")


def test_properties_parsing_and_errors(tmp_path: Path) -> None:
    assert parse_properties("# c\na=1\nb : two\nc=x\\\n  y\n! d\n") == {"a": "1", "b": "two", "c": "xy"}
    with pytest.raises(ConfigError, match=r"f.properties:2: expected key=value"):
        parse_properties("a=1\n=oops\n", "f.properties")
    path = tmp_path / "application.properties"
    path.write_text("debezium.sink.type=kafka\n")
    with pytest.raises(ConfigError, match="debezium.sink.type must be pubsub"):
        DebeziumServerConfig.load(path)
    with pytest.raises(ConfigError, match=re.escape("expected postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME")):
        DatabaseURL.parse("mysql://x@h/db")
    result = run_cli("cdc", "run", "--database", "postgresql://u@127.0.0.1:1/db", "--output", "s3://bucket")
    assert result.exit_code == 2 and "expected pubsub://PROJECT, kafka://HOST:PORT or file://DIR" in result.output


@pytest.mark.parametrize(
    "url, reason",
    [
        ("postgresql://shop:hunter2-secret@127.0.0.1:99999/shopdb", "a port is a number from 1 to 65535"),
        ("postgresql://shop:hunter2-secret@127.0.0.1:54x2/shopdb", "a port is a number from 1 to 65535"),
        ("postgresql://shop:hunter2-secret@127.0.0.1:0/shopdb", "port 0 is not a port"),
        ("postgresql://shop:hunter2/secret@127.0.0.1/shopdb", "must be percent-encoded"),  # an unencoded / in it
        ("postgresql://shop:hunter2-secret@127.0.0.1:5432", "expected postgresql://USER[:PASSWORD]@HOST"),
        ("mysql://shop:hunter2-secret@127.0.0.1/shopdb", "expected postgresql://USER[:PASSWORD]@HOST"),
        ("postgresql://shop:hunter2-secret@[::1/shopdb", "the host or port cannot be read"),
    ],
)
def test_a_bad_database_url_is_a_clear_error_that_never_shows_the_password(url, reason) -> None:
    with pytest.raises(ConfigError, match=re.escape(reason)) as raised:
        DatabaseURL.parse(url)
    assert "hunter2" not in str(raised.value) and "://shop:***@" in str(raised.value)
    result = run_cli("cdc", "run", "--database", url, "--output", "file://unused")  # the command, as a user meets it
    assert result.exit_code == 2 and reason in result.output and "Traceback" not in result.output
    assert "hunter2" not in result.output


def _stop(process: subprocess.Popen) -> None:
    code = stop_capture(process)
    assert code == 0, process.stderr.read()


def _changes(url: str) -> None:
    with psycopg.connect(url) as con:
        con.execute(
            "INSERT INTO customers (external_id, email, full_name, country) VALUES ('U1', 'u1@example.com', 'Ann', 'DE')"
        )
        con.execute("UPDATE customers SET city = 'Berlin' WHERE external_id = 'U1'")
        con.execute("DELETE FROM customers WHERE external_id = 'U1'")


@pytest.mark.postgres
@pytest.mark.pubsub
@pytest.mark.slow
def test_pubsub_output_publishes_what_debezium_server_publishes(shop_db: str, pubsub: str, tmp_path: Path) -> None:
    """One message per change on the table's topic: data the JSON change event, ordering key
    the record key, no attributes, no tombstone."""
    from google.cloud import pubsub_v1

    run_entry_point("cdc", "workload", "-d", shop_db, "--operations", "0")
    project = f"cdc-{uuid.uuid4().hex[:8]}"
    os.environ["PUBSUB_EMULATOR_HOST"] = pubsub
    try:
        publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
        topic = publisher.create_topic(name=publisher.topic_path(project, "cdc.public.customers")).name
        subscription = subscriber.create_subscription(
            request={
                "name": subscriber.subscription_path(project, "customers"),
                "topic": topic,
                "enable_message_ordering": True,
            }
        ).name
        capture = start_capture(shop_db, f"pubsub://{project}", tmp_path / "offsets.dat", PUBSUB_EMULATOR_HOST=pubsub)
        try:
            messages: list[Any] = []
            deadline = time.monotonic() + 90
            changed = False
            while time.monotonic() < deadline and len([m for m in messages if b'"U1"' in m.data]) < 3:
                response = subscriber.pull(request={"subscription": subscription, "max_messages": 1000}, timeout=10)
                messages += [r.message for r in response.received_messages]
                if response.received_messages:
                    subscriber.acknowledge(
                        request={
                            "subscription": subscription,
                            "ack_ids": [r.ack_id for r in response.received_messages],
                        }
                    )
                if len(messages) >= 2000 and not changed:  # the snapshot is in: now the changes
                    _changes(shop_db)
                    changed = True
        finally:
            _stop(capture)
    finally:
        del os.environ["PUBSUB_EMULATOR_HOST"]
    snapshot = [m for m in messages if orjson.loads(m.data)["op"] == "r"]
    assert len(snapshot) == 2000 and all(
        m.ordering_key == orjson.dumps({"id": orjson.loads(m.data)["after"]["id"]}).decode() for m in snapshot
    )
    ours = [orjson.loads(m.data) for m in messages if b'"U1"' in m.data]
    assert [e["op"] for e in ours] == ["c", "u", "d"]
    assert ours[1]["before"]["city"] is None and ours[1]["after"]["city"] == "Berlin"
    assert len({m.ordering_key for m in messages if b'"U1"' in m.data}) == 1
    assert all(not m.attributes for m in messages) and all(m.data != b"null" for m in messages)


@pytest.mark.postgres
@pytest.mark.kafka
@pytest.mark.slow
def test_kafka_output_keeps_keys_and_tombstones(shop_db: str, kafka: str, tmp_path: Path) -> None:
    from confluent_kafka import Consumer

    run_entry_point("cdc", "workload", "-d", shop_db, "--operations", "0")
    capture = start_capture(shop_db, f"kafka://{kafka}", tmp_path / "offsets.dat")
    consumer = Consumer(
        {
            "bootstrap.servers": kafka,
            "group.id": f"t-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            # The capture may create the topic after the subscription: librdkafka looks for it
            # again only at the next metadata refresh (every 5 minutes by default).
            "topic.metadata.refresh.interval.ms": 1000,
        }
    )
    try:
        consumer.subscribe(["cdc.public.customers"])
        records: list[Any] = []
        deadline, changed = time.monotonic() + 90, False
        while time.monotonic() < deadline and len([r for r in records if r.value() is None]) < 1:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                records.append(message)
            if len(records) >= 2000 and not changed:
                _changes(shop_db)
                changed = True
    finally:
        consumer.close()
        _stop(capture)
    ours = [r for r in records[2000:]]
    assert [None if r.value() is None else orjson.loads(r.value())["op"] for r in ours] == ["c", "u", "d", None]
    assert len({r.key() for r in ours}) == 1 and orjson.loads(ours[0].key()) == {"id": 2001}


@pytest.mark.postgres
@pytest.mark.slow
def test_the_workload_is_repeatable_and_follows_the_lifecycle(postgres_cluster: str, shop_db: str) -> None:
    """The same seed on the same starting database gives the same rows; every order's status is reachable."""

    def run(url: str) -> list[Any]:
        run_entry_point("cdc", "workload", "-d", url, "--operations", "300", "--rate", "0", "--seed", "9")
        with psycopg.connect(url) as con:
            return [
                con.execute(f"SELECT {cols} FROM {table} ORDER BY id").fetchall()
                for table, cols in (
                    ("orders", "id, customer_id, order_status, total_amount"),
                    ("order_items", "order_id, product_id, quantity"),
                    ("products", "id, price, stock_quantity"),
                    ("inventory_movements", "product_id, change_quantity, reason"),
                )
            ]

    first = run(shop_db)
    other = shop_db.rsplit("/", 1)[0] + "/shop"  # the session's own empty database
    assert run(other) == first
    orders, items, products, movements = first
    assert {status for _, _, status, _ in orders} >= {"PENDING", "PAID", "SHIPPED"}
    assert all(quantity > 0 for *_, quantity in items) and all(stock >= 0 for *_, stock in products)
    reachable = {"PENDING"} | {to for nexts in ORDER_TRANSITIONS.values() for to, _ in nexts}
    assert {status for _, _, status, _ in orders} <= reachable
    assert {reason for *_, reason in movements} >= {"SALE", "RETURN", "RESTOCK"}


def test_the_personal_columns_salt_goes_into_the_hashing_property(tmp_path: Path) -> None:
    config, db = DebeziumServerConfig.load(), DatabaseURL.parse("postgresql://u@127.0.0.1:1/db")
    given = config.embedded_properties(db, tmp_path / "a" / "offsets.dat", env={"CDC_PII_SALT": "ab" * 16})
    assert (
        given["column.mask.hash.v2.SHA-256.with.salt." + "ab" * 16]
        == "public.customers.email,public.customers.full_name"
    )
    # without the variable: a salt of the capture's own, made once beside its offsets, private
    first = config.embedded_properties(db, tmp_path / "b" / "offsets.dat", env={})
    salt = (tmp_path / "b" / "pii-salt").read_text().strip()
    assert re.fullmatch(r"[0-9a-f]{32}", salt) and (tmp_path / "b" / "pii-salt").stat().st_mode & 0o777 == 0o600
    assert config.embedded_properties(db, tmp_path / "b" / "offsets.dat", env={}) == first
    assert f"column.mask.hash.v2.SHA-256.with.salt.{salt}" in first
    with pytest.raises(ConfigError, match="16 to 128 lower-case hex digits") as raised:
        config.embedded_properties(db, tmp_path / "c" / "offsets.dat", env={"CDC_PII_SALT": "not hex; x=y"})
    assert "not hex" not in str(raised.value)  # a salt is a secret: never printed
