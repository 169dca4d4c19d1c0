"""Every output carries the same events as the files do for the same seed.

Runs the installed ``streamforge`` console script, against a real Kafka-compatible broker
(Tansu) and a real Pub/Sub emulator, both started on 127.0.0.1 by the fixtures.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path

import orjson
import pytest

from streamforge.schemas import registry
from tests.support.cli import run_entry_point, simulate_to

OPTIONS = ("--duration", "15m", "--seed", "5", "--fraud-rate", "0.05")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[bytes]]:
    """The file output of OPTIONS: what every other output must carry."""
    directory = simulate_to(tmp_path_factory.mktemp("reference"), *OPTIONS)
    return {name: (directory / f"{name}.jsonl").read_bytes().splitlines() for name in ("clickstream", "orders")}


def test_file_output_layout(default_run: Path) -> None:
    assert sorted(p.name for p in default_run.iterdir()) == [
        "clickstream.jsonl",
        "fraud_labels.jsonl",
        "orders.jsonl",
        "summary.json",
    ]


def test_stdout(reference: dict[str, list[bytes]]) -> None:
    process = run_entry_point("simulate", "--output", "-", *OPTIONS)
    lines = process.stdout.encode().splitlines()
    assert Counter(lines) == Counter(reference["clickstream"] + reference["orders"])
    times = [orjson.loads(line)["event_time"] for line in lines]
    assert times == sorted(times)  # both streams interleaved in event-time order
    assert "Simulation summary" in process.stderr  # the summary goes to stderr, never into the data


def test_stdout_refuses_binary_formats() -> None:
    process = run_entry_point("simulate", "--output", "-", "--format", "avro", *OPTIONS, check=False)
    assert process.returncode == 1
    assert "stdout carries JSON lines" in process.stderr


def _consume(bootstrap: str, topics: list[str], expected: int, timeout: float = 60) -> list:
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
        }
    )
    consumer.subscribe(topics)
    messages, deadline = [], time.monotonic() + timeout
    try:
        while len(messages) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None:
                assert message.error() is None, message.error()
                messages.append(message)
        extra = consumer.poll(1.0)  # nothing more than expected
        assert extra is None, "more messages than the simulation wrote"
    finally:
        consumer.close()
    return messages


@pytest.mark.kafka
@pytest.mark.parametrize("fmt", ["json", "confluent"])
def test_kafka(kafka: str, reference: dict[str, list[bytes]], tmp_path: Path, fmt: str) -> None:
    topics = {"clickstream": f"clicks-{fmt}", "orders": f"orders-{fmt}"}
    config = tmp_path / "topics.toml"
    config.write_text(f'[topics]\nclickstream = "{topics["clickstream"]}"\norders = "{topics["orders"]}"\n')
    run_entry_point("--config", str(config), "simulate", "--output", f"kafka://{kafka}", "--format", fmt, *OPTIONS)
    expected = sum(len(lines) for lines in reference.values())
    messages = _consume(kafka, list(topics.values()), expected)
    partitions_of_user: dict[bytes, set[int]] = {}
    received: dict[str, list[bytes]] = {"clickstream": [], "orders": []}
    for message in messages:
        stream = next(name for name, topic in topics.items() if topic == message.topic())
        headers = dict(message.headers())
        if fmt == "confluent":
            record = registry().from_confluent(message.value(), headers["schema"].decode())
            value = orjson.loads(registry().get(headers["schema"].decode()).to_json(record))
        else:
            value = orjson.loads(message.value())
        assert message.key().decode() == value["user_id"]
        assert headers["event_id"].decode() == value["event_id"]
        assert headers["event_time"].decode() == value["event_time"]
        assert headers["encoding"].decode() == fmt
        kind, timestamp_ms = message.timestamp()  # Kafka IO's event time on Dataflow: the event time
        assert kind == 1  # confluent_kafka.TIMESTAMP_CREATE_TIME
        assert timestamp_ms == int(datetime.fromisoformat(value["event_time"]).timestamp() * 1000)
        partitions_of_user.setdefault(message.key(), set()).add((message.topic(), message.partition()))
        received[stream].append(orjson.dumps(value))
    for stream, lines in reference.items():
        assert Counter(received[stream]) == Counter(orjson.dumps(orjson.loads(line)) for line in lines)
    # Keyed by user: one user's events of a topic all land in one partition, in order.
    assert all(
        len({p for t, p in parts if t == topic}) <= 1
        for parts in partitions_of_user.values()
        for topic in topics.values()
    )


@pytest.mark.kafka
def test_kafka_unreachable_is_a_clear_error() -> None:
    from tests.support.servers import free_port

    process = run_entry_point(
        "simulate", "--output", f"kafka://127.0.0.1:{free_port()}", *OPTIONS, check=False, timeout=90
    )
    assert process.returncode == 1
    assert "error: Kafka at 127.0.0.1:" in process.stderr


@pytest.mark.pubsub
def test_pubsub(pubsub: str, reference: dict[str, list[bytes]]) -> None:
    """Against the emulator: PUBSUB_EMULATOR_HOST's, or the Cloud SDK's started on loopback."""
    from google.cloud import pubsub_v1

    project = f"test-{uuid.uuid4().hex[:8]}"
    env = {"PUBSUB_EMULATOR_HOST": pubsub}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PUBSUB_EMULATOR_HOST", pubsub)
        publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
        subscriptions = {}
        for stream in ("clickstream", "orders"):  # subscribe first: Pub/Sub keeps nothing for nobody
            topic = publisher.create_topic(name=publisher.topic_path(project, stream)).name
            subscriptions[stream] = subscriber.create_subscription(
                name=subscriber.subscription_path(project, f"{stream}-test"), topic=topic
            ).name
        run_entry_point("simulate", "--output", f"pubsub://{project}", *OPTIONS, env=env)
        for stream, path in subscriptions.items():
            received, deadline = [], time.monotonic() + 60
            while len(received) < len(reference[stream]) and time.monotonic() < deadline:
                response = subscriber.pull(subscription=path, max_messages=1000, timeout=10)
                for item in response.received_messages:
                    value = orjson.loads(item.message.data)
                    attributes = dict(item.message.attributes)
                    assert attributes == {
                        "event_id": value["event_id"],
                        "event_time": value["event_time"],
                        "schema": f"{'clickstream_event' if stream == 'clickstream' else 'order_event'}",
                        "encoding": "json",
                    }
                    received.append(item.message.data)
                if response.received_messages:
                    subscriber.acknowledge(subscription=path, ack_ids=[m.ack_id for m in response.received_messages])
            assert Counter(received) == Counter(reference[stream]), stream
        subscriber.close()


def test_pubsub_without_credentials_or_emulator_is_a_clear_error(tmp_path: Path) -> None:
    env = {
        "PUBSUB_EMULATOR_HOST": "",
        "GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "none.json"),
        "HOME": str(tmp_path),
    }
    process = run_entry_point("simulate", "--output", "pubsub://some-project", *OPTIONS, env=env, check=False)
    assert process.returncode == 1
    assert "error:" in process.stderr and "Traceback" not in process.stderr
