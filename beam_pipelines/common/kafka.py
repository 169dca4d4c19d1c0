"""Reading Kafka with confluent-kafka: bounded reads (``kafka://.../TOPIC?until=end``), and the
client helpers the local streaming feed (local/feed.py, ``KafkaFeed``) uses.

When the job starts, ``plan_bounded`` fixes what to read: every partition of the topic from
its start offset (``start``: earliest, the group's committed offsets, a time) to the end
offset it has then. The job reads exactly those ranges, a plain DoFn per range, so the result
is the same as the same events in a file, whatever arrives meanwhile. After the job has
written its results, ``commit_bounded`` commits the end offsets for the URL's group (none
without one), so the next bounded read of that group starts where this one stopped.

Each message becomes ``(payload, encoding, event_id)`` for the parse step: the encoding from
the ``encoding`` header the producers set (a headerless message is the Confluent wire format
when it starts with its zero magic byte, else JSON), the event id from the ``event_id``
header (dedup needs it before decoding), a tombstone's missing value as an empty payload
(dead-lettered like any malformed message).

End offsets come from a fetch's high watermark, not from ListOffsets alone: the Tansu broker
the tests use answers ListOffsets(LATEST) with the start of its last record batch + 1
(docs/platform-notes.md). librdkafka's ``consume(n, timeout)`` waits the whole timeout when
fewer than n messages remain, so the reader never asks for more than are left.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Iterable

import apache_beam as beam
from apache_beam.metrics import Metrics

from streamforge.kafka import KafkaUrl, PartitionRange
from streamforge.timeutil import parse_timestamp, to_millis

__all__ = [
    "DISCOVER_EVERY_S",
    "KafkaReadError",
    "ReadKafkaBatches",
    "commit_bounded",
    "commit_offsets",
    "consume",
    "item_of",
    "kafka_consumer",
    "message_event_ms",
    "message_item",
    "plan_bounded",
    "start_positions",
    "topic_partitions",
]

TIMEOUT_S = 10.0
#: How often an unbounded read looks for new partitions (locally and on Dataflow).
DISCOVER_EVERY_S = 30.0
#: The group a read without one identifies itself with (it never commits).
READER_GROUP = "streamforge-reader"


class KafkaReadError(RuntimeError):
    """Kafka could not be read as asked; the message says which broker, topic and partition."""


class _Client:
    """A consumer with what librdkafka complained about (its error callback), for messages."""

    def __init__(self, consumer: Any, complaints: list[str]):
        self.consumer, self.complaints = consumer, complaints

    def why(self, fallback: Any) -> str:
        return "; ".join(self.complaints[-3:]) or str(fallback)


def kafka_consumer(url: KafkaUrl, **extra: Any) -> _Client:
    """A consumer for ``url`` (its group, or READER_GROUP), committing only when asked."""
    try:
        from confluent_kafka import Consumer
    except ImportError:
        raise KafkaReadError("kafka:// needs confluent-kafka: pip install 'streamforge[kafka]'") from None
    complaints: list[str] = []
    settings = {
        **url.client_settings(KafkaReadError),
        "group.id": url.group or READER_GROUP,
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "error_cb": lambda error: complaints.append(str(error)),
        **extra,
    }
    return _Client(Consumer(settings), complaints)


def plan_bounded(url: KafkaUrl) -> KafkaUrl:
    """``url`` with the ranges to read: each partition from ``start`` to its end offset now."""
    from confluent_kafka import TopicPartition

    client = kafka_consumer(url)
    consumer = client.consumer
    try:
        partitions = [TopicPartition(url.topic, p) for p in topic_partitions(client, url)]
        lows = {tp.partition: consumer.get_watermark_offsets(tp, timeout=TIMEOUT_S)[0] for tp in partitions}
        ends = _end_offsets(consumer, url, partitions)
        starts = _start_offsets(consumer, url, partitions, lows, ends)
    finally:
        consumer.close()
    ranges = tuple(PartitionRange(url.topic, p, min(max(starts[p], lows[p]), ends[p]), ends[p]) for p in sorted(ends))
    return replace(url, ranges=ranges)


def topic_partitions(client: _Client, url: KafkaUrl) -> list[int]:
    """The partitions of ``url``'s topic; KafkaReadError if it has none or cannot be asked."""
    from confluent_kafka import KafkaException

    try:
        metadata = client.consumer.list_topics(url.topic, timeout=TIMEOUT_S)
    except KafkaException as exc:
        raise KafkaReadError(f"Kafka at {url.bootstrap}: {client.why(exc)}") from None
    topic = metadata.topics.get(url.topic)
    if topic is None or topic.error is not None or not topic.partitions:
        why = topic.error.str() if topic is not None and topic.error is not None else "no such topic"
        raise KafkaReadError(f"Kafka at {url.bootstrap}: topic {url.topic}: {why}")
    return sorted(topic.partitions)


def start_positions(client: _Client, url: KafkaUrl, partitions: list[int]) -> list[Any]:
    """Where a streaming read of ``partitions`` starts, as TopicPartitions to assign: with
    ``start=committed`` the group's committed offsets (earliest where it has none), else
    ``start`` (earliest, latest, a time) whatever was committed."""
    from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, TopicPartition

    fallback = {"earliest": OFFSET_BEGINNING, "latest": OFFSET_END, "committed": OFFSET_BEGINNING}
    committed: dict[int, int] = {}
    if url.start == "committed":
        wanted = [TopicPartition(url.topic, p) for p in partitions]
        committed = {tp.partition: tp.offset for tp in client.consumer.committed(wanted, timeout=TIMEOUT_S)}
    if url.start in fallback:
        start = {p: fallback[url.start] for p in partitions}
    else:
        at_ms = int(url.start_time.timestamp() * 1000)
        found = client.consumer.offsets_for_times(
            [TopicPartition(url.topic, p, at_ms) for p in partitions], timeout=TIMEOUT_S
        )
        start = {tp.partition: tp.offset if tp.offset >= 0 else OFFSET_END for tp in found}
    use_committed = url.start == "committed"
    return [
        TopicPartition(url.topic, p, committed[p] if use_committed and committed.get(p, -1) >= 0 else start[p])
        for p in partitions
    ]


def consume(client: _Client, url: KafkaUrl, n: int, timeout: float) -> list[Any]:
    """Up to ``n`` messages (partition ends skipped); KafkaReadError on any other error."""
    from confluent_kafka import KafkaError

    messages = []
    for message in client.consumer.consume(n, timeout=timeout):
        error = message.error()
        if error is None:
            messages.append(message)
        elif error.code() != KafkaError._PARTITION_EOF:
            raise KafkaReadError(
                f"Kafka at {url.bootstrap}: topic {message.topic()} partition {message.partition()}: {error.str()}"
            )
    return messages


def message_event_ms(message: Any) -> int:
    """A message's event time: its ``event_time`` header (RFC 3339), else its Kafka timestamp."""
    for name, value in message.headers() or ():
        if name == "event_time" and value:
            try:
                return to_millis(parse_timestamp(value.decode("utf-8", "replace")))
            except ValueError:
                break
    kind, ms = message.timestamp()
    return ms if kind != 0 and ms >= 0 else int(time.time() * 1000)  # 0: TIMESTAMP_NOT_AVAILABLE


def commit_offsets(client: _Client, url: KafkaUrl, positions: dict[int, int]) -> None:
    """Commit ``positions`` (partition -> next offset) for ``url``'s group."""
    from confluent_kafka import KafkaException, TopicPartition

    try:
        client.consumer.commit(
            offsets=[TopicPartition(url.topic, p, o) for p, o in sorted(positions.items())], asynchronous=False
        )
    except KafkaException as exc:
        raise KafkaReadError(
            f"Kafka at {url.bootstrap}: committing group {url.group}'s offsets of {url.topic}: {client.why(exc)}"
        ) from None


def _end_offsets(consumer: Any, url: KafkaUrl, partitions: list[Any]) -> dict[int, int]:
    """Each partition's high watermark, as a fetch reports it: fetch at the listed end and
    read the watermark the response carried (right where ListOffsets is not)."""
    from confluent_kafka import KafkaError, TopicPartition

    listed = {tp.partition: consumer.get_watermark_offsets(tp, timeout=TIMEOUT_S)[1] for tp in partitions}
    consumer.assign([TopicPartition(url.topic, p, offset) for p, offset in listed.items()])
    answered: set[int] = set()
    deadline = time.monotonic() + TIMEOUT_S
    while len(answered) < len(listed):
        if time.monotonic() > deadline:
            missing = sorted(set(listed) - answered)
            raise KafkaReadError(
                f"Kafka at {url.bootstrap}: topic {url.topic}: no fetch answer from partitions "
                f"{missing} in {TIMEOUT_S:.0f} s"
            )
        for message in consumer.consume(len(listed), timeout=0.5):
            error = message.error()
            if error is not None and error.code() != KafkaError._PARTITION_EOF:
                raise KafkaReadError(
                    f"Kafka at {url.bootstrap}: topic {url.topic} partition {message.partition()}: {error.str()}"
                )
            answered.add(message.partition())
    ends = {
        p: max(listed[p], consumer.get_watermark_offsets(TopicPartition(url.topic, p), cached=True)[1]) for p in listed
    }
    consumer.unassign()
    return ends


def _start_offsets(
    consumer: Any, url: KafkaUrl, partitions: list[Any], lows: dict[int, int], ends: dict[int, int]
) -> dict[int, int]:
    from confluent_kafka import TopicPartition

    if url.start == "earliest":
        return dict(lows)
    if url.start == "latest":
        return dict(ends)
    if url.start == "committed":
        committed = consumer.committed(partitions, timeout=TIMEOUT_S)
        return {tp.partition: tp.offset if tp.offset >= 0 else lows[tp.partition] for tp in committed}
    at_ms = int(url.start_time.timestamp() * 1000)
    found = consumer.offsets_for_times(
        [TopicPartition(url.topic, tp.partition, at_ms) for tp in partitions], timeout=TIMEOUT_S
    )
    return {tp.partition: tp.offset if tp.offset >= 0 else ends[tp.partition] for tp in found}


def commit_bounded(url: KafkaUrl) -> None:
    """Commit a planned read's end offsets for its group (nothing without a group)."""
    if url.group is None or not url.ranges:
        return
    client = kafka_consumer(url)
    try:
        commit_offsets(client, url, {r.partition: r.end for r in url.ranges})
    finally:
        client.consumer.close()


def message_item(message: Any) -> tuple[bytes, str, str | None]:
    """A confluent-kafka message -> ``(payload, encoding, event_id)`` (module docstring)."""
    return item_of(message.value(), message.headers() or ())


def item_of(value: bytes | None, headers: Iterable[tuple[str, bytes | None]]) -> tuple[bytes, str, str | None]:
    """A message's value and headers -> ``(payload, encoding, event_id)``: the encoding from the
    ``encoding`` header, else Confluent when the payload starts with the zero magic byte, else JSON."""
    payload = value or b""
    encoding = event_id = None
    for name, header in headers:
        if name == "encoding" and header is not None:
            encoding = header
        elif name == "event_id" and header is not None:
            event_id = header
    if encoding is None:
        encoding_name = "confluent" if payload[:1] == b"\x00" else "json"
    else:
        encoding_name = encoding.decode("utf-8", "replace")
    return payload, encoding_name, None if event_id is None else event_id.decode("utf-8", "replace")


class _ReadRange(beam.DoFn):
    """A ``PartitionRange`` -> lists of at most ``batch`` message items."""

    def __init__(self, url: KafkaUrl, batch: int):
        self.url, self.batch = replace(url, ranges=None), batch

    def setup(self) -> None:
        self.client = kafka_consumer(self.url)
        self.consumer = self.client.consumer
        self.read = Metrics.counter("kafka", "messages_read")

    def process(self, offsets: PartitionRange) -> Iterable[list[tuple[bytes, str, str | None]]]:
        from confluent_kafka import KafkaError, TopicPartition

        if offsets.size == 0:
            return
        self.consumer.assign([TopicPartition(offsets.topic, offsets.partition, offsets.start)])
        position, batch = offsets.start, []
        where = f"Kafka at {self.url.bootstrap}: topic {offsets.topic} partition {offsets.partition}"
        try:
            while position < offsets.end:
                messages = self.consumer.consume(min(self.batch, offsets.end - position), timeout=TIMEOUT_S)
                if not messages:
                    raise KafkaReadError(
                        f"{where}: nothing at offset {position} in {TIMEOUT_S:.0f} s, "
                        f"{offsets.end - position} messages before the planned end {offsets.end} "
                        f"({self.client.why('the broker did not answer')})"
                    )
                for message in messages:
                    error = message.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            position = offsets.end  # the rest were not records (transaction markers, compacted)
                            break
                        raise KafkaReadError(f"{where}: {error.str()}")
                    if message.offset() >= offsets.end:
                        position = offsets.end
                        break
                    batch.append(message_item(message))
                    position = message.offset() + 1
                    if len(batch) >= self.batch:
                        self.read.inc(len(batch))
                        yield batch
                        batch = []
        finally:
            self.consumer.unassign()
        if batch:
            self.read.inc(len(batch))
            yield batch

    def teardown(self) -> None:
        consumer = getattr(self, "consumer", None)
        if consumer is not None:
            consumer.close()


class ReadKafkaBatches(beam.PTransform):
    """A planned bounded read (``plan_bounded``) -> lists of ``(payload, encoding, event_id)``,
    the partitions' ranges spread over the workers."""

    def __init__(self, url: KafkaUrl, *, batch: int = 10_000):
        super().__init__()
        if url.ranges is None:
            raise ValueError(f"{url}: plan the read first (plan_bounded)")
        self.url, self.batch = url, batch

    def expand(self, pbegin):
        return (
            pbegin
            | "Partition ranges" >> beam.Create(list(self.url.ranges))
            | "Spread ranges" >> beam.Reshuffle()
            | "Read partition ranges" >> beam.ParDo(_ReadRange(self.url, self.batch))
        )
