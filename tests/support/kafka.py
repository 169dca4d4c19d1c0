"""Producing test messages to the local broker (Tansu)."""

from __future__ import annotations

from typing import Iterable

__all__ = ["produce"]


def produce(
    bootstrap: str,
    topic: str,
    payloads: Iterable[bytes | tuple[bytes, list[tuple[str, bytes]]]],
    *,
    partitions: int = 3,
) -> int:
    """Produce ``payloads`` (bytes, or (bytes, headers)) to ``topic``, created with ``partitions``
    if missing, spread round-robin over its partitions; returns how many were delivered."""
    from confluent_kafka import Producer

    from streamforge.transport import ensure_kafka_topics

    common = ensure_kafka_topics(bootstrap, [topic], RuntimeError, partitions=partitions)
    producer = Producer({**common, "acks": "all"})
    failures: list[str] = []
    count = 0
    for i, item in enumerate(payloads):
        value, headers = item if isinstance(item, tuple) else (item, [])
        producer.produce(
            topic,
            value=value,
            headers=headers,
            partition=i % partitions,
            on_delivery=lambda error, _m: failures.append(str(error)) if error else None,
        )
        count += 1
    assert producer.flush(30) == 0 and not failures, failures
    return count
