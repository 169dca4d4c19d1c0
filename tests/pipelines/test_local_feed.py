"""The local feed's event stream (beam_pipelines/local/feed.py), against a scripted subscriber:
event time drives the watermark, a quiet input does not hold the others back, redeliveries
are dropped by id and counted, everything pulled is acknowledged, and a drain ends the stream."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

from beam_pipelines.local.feed import MESSAGE_CODER, PubSubFeed, _Input
from streamforge.config import LocalStreamingConfig
from streamforge.timeutil import format_timestamp, to_millis

A, B = "projects/p-test1/subscriptions/clicks", "projects/p-test1/subscriptions/orders"
T0 = datetime(2026, 11, 1, 8, 0, tzinfo=timezone.utc)
SETTINGS = LocalStreamingConfig(watermark_lag=timedelta(seconds=1), idle_input=timedelta(seconds=0.3), pull_batch=1000)


@dataclass
class ScriptedSubscriber:
    """Hands out the batches queued per subscription, then empty pulls; records acknowledgements."""

    batches: dict[str, list[list[Any]]]
    acked: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def pull(self, request: dict[str, Any], timeout: float) -> Any:
        time.sleep(0.05)  # each pull takes a moment, so a stream of batches keeps its input active
        with self.lock:
            queued = self.batches.get(request["subscription"], [])
            if queued:
                return SimpleNamespace(received_messages=queued.pop(0))
        return SimpleNamespace(received_messages=[])

    def acknowledge(self, request: dict[str, Any]) -> None:
        with self.lock:
            self.acked += request["ack_ids"]


def message(event_id: str, seconds: float, data: bytes = b"{}") -> Any:
    at = T0 + timedelta(seconds=seconds)
    attributes = {"event_id": event_id, "event_time": format_timestamp(at), "encoding": "json"}
    return SimpleNamespace(
        ack_id=f"ack-{event_id}", message=SimpleNamespace(data=data, attributes=attributes, publish_time=at)
    )


def run_feed(
    batches: dict[str, list[list[Any]]], seconds: float, ttl: timedelta = timedelta(hours=1)
) -> tuple[list[Any], PubSubFeed, ScriptedSubscriber]:
    subscriber = ScriptedSubscriber(batches)
    feed = PubSubFeed([A, B], SETTINGS, ttl, subscriber=subscriber)
    events: list[Any] = []
    with feed:
        threading.Timer(seconds, feed.drain).start()
        events = list(feed.Events(None, None))  # ends once drained
    return events, feed, subscriber


def watermarks(events: list[Any], path: str) -> list[int]:
    return [
        e.watermark_event.new_watermark // 1000
        for e in events
        if e.HasField("watermark_event") and e.watermark_event.tag == path
    ]


def test_elements_carry_their_event_time_and_redeliveries_are_dropped() -> None:
    events, feed, subscriber = run_feed({A: [[message("a1", 0), message("a2", 5), message("a1", 0)]]}, 0.5)
    (added,) = [e.element_event for e in events if e.HasField("element_event")]
    assert added.tag == A
    assert [(MESSAGE_CODER.decode(e.encoded_element), e.timestamp // 1000) for e in added.elements] == [
        ((b"{}", "json", -1), to_millis(T0)),
        ((b"{}", "json", -1), to_millis(T0) + 5000),
    ]  # no received_at
    counts = feed.counts()[A]
    assert (counts.pulled, counts.duplicates, counts.acked) == (3, 1, 3)
    assert sorted(subscriber.acked) == ["ack-a1", "ack-a1", "ack-a2"]  # the redelivery is acknowledged too


def test_an_id_is_remembered_for_the_ttl_of_event_time_then_forgotten() -> None:
    """With a 1-minute ttl, the id of an event at 08:00:00 expires in the minute 08:01 and is
    forgotten once every watermark has passed 08:02:00 (ids are forgotten a minute at a time)."""
    filler = [[message(f"f{i}", 150 + i)] for i in range(10)]  # more than one gather apart
    script = [
        [message("a1", 0)],
        [message("x", 30)],
        [message("a1", 0)],  # within the ttl: a redelivery
        [message("y", 150)],  # the watermark passes 08:02:00 (149 s, the lag is 1 s)
        *filler,
        [message("a1", 0)],  # forgotten: handed over again
    ]
    events, feed, _ = run_feed(
        {A: script, B: [[message(f"b{i}", 150 + i)] for i in range(12)]}, 1.8, timedelta(minutes=1)
    )
    handed = [
        e
        for ev in events
        if ev.HasField("element_event") and ev.element_event.tag == A
        for e in ev.element_event.elements
    ]
    counts = feed.counts()[A]
    assert (counts.pulled, counts.duplicates, len(handed)) == (15, 1, 14)
    assert hash((A, "x")) not in feed._seen and hash((A, "y")) in feed._seen  # x forgotten with a1's minute
    assert min(feed._expiring) * 60_000 >= to_millis(T0) + 120_000


def test_the_watermark_follows_event_time_and_a_quiet_input_follows_the_others() -> None:
    # A reads one event a second of event time, a batch every 50 ms of wall time; B reads nothing
    events, _, _ = run_feed({A: [[message(f"a{i}", i)] for i in range(20)]}, 1.5)
    marks_a, marks_b = watermarks(events, A), watermarks(events, B)
    assert marks_a == sorted(set(marks_a))  # strictly advancing
    # an event's time minus the lag (the first batch handed over may hold one event or a few)
    assert (marks_a[0] - to_millis(T0) + 1000) % 1000 == 0 and marks_a[0] < to_millis(T0) + 18_000
    assert to_millis(T0) + 18_000 in marks_a  # the last event's time (19 s) minus the lag, while A is active
    # once quiet for idle_input, B follows A instead of holding every window open: it has a
    # watermark before A has read its last event
    assert marks_b and marks_b[0] < to_millis(T0) + 18_000


def test_when_every_input_is_quiet_event_time_goes_on_with_the_clock() -> None:
    events, _, _ = run_feed({A: [[message("a1", 0)]], B: [[message("b1", 0)]]}, 1.5)
    marks = watermarks(events, A)
    assert marks[0] == to_millis(T0) - 1000
    assert marks[-1] > to_millis(T0) - 1000 + 500  # advanced by the quiet time, about 1 s


def test_a_drain_hands_over_what_was_pulled_then_ends_the_stream() -> None:
    batches = {A: [[message(f"a{i}", i / 10) for i in range(50)] for _ in range(1)], B: [[message("b1", 1)]]}
    events, feed, subscriber = run_feed(batches, 0.3)
    elements = sum(len(e.element_event.elements) for e in events if e.HasField("element_event"))
    assert elements == 51 and len(subscriber.acked) == 51
    assert not feed.errors


def test_a_kafka_input_keeps_a_watermark_per_partition() -> None:
    """The input's event time is its slowest active partition's newest: a partition behind
    holds the watermark back until it goes quiet (KafkaFeed reads partitions this way)."""
    state = _Input("kafka-topic")
    state.saw(0, 10_000, now=100.0)
    state.saw(1, 4_000, now=100.0)
    state.saw(0, 12_000, now=100.2)
    assert state.newest_ms(now=100.2, idle_s=0.3) == 4_000  # partition 1 is behind
    assert state.newest_ms(now=100.45, idle_s=0.3) == 12_000  # partition 1 quiet: no longer holds it back
    state.saw(1, 5_000, now=100.5)
    assert state.newest_ms(now=100.5, idle_s=0.3) == 5_000  # active again
    assert state.newest_ms(now=101.0, idle_s=0.3) == 12_000  # all quiet: the newest of all
