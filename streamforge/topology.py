"""The Pub/Sub topics and subscriptions of a deployment, declared once.

The infrastructure program creates exactly these (``infra/messaging.py``), and whatever sets
up a local emulator can create the same. Topic ids come from the config (``[topics]``, which
the simulator, the ingest function and the pipelines read) and from Debezium's properties
file (``cdc.public.<table>``, the heartbeat topic); subscription ids are the deployment prefix
and their consumer.

Who reads a subscription decides how failures are handled:

- a Dataflow job (``dataflow=True``): Dataflow does not support Pub/Sub dead-letter topics or
  retry policies (it acknowledges only what it has durably committed and extends deadlines
  on its own); the pipelines' own dead letters take every message they cannot use, with the
  reason (the ``dead_letter`` table and topic);
- the alert dispatcher (a push subscription) and the operators' subscriptions: exponential
  backoff, then the ``undeliverable`` topic after ``max_delivery_attempts``.
"""

from __future__ import annotations

from dataclasses import dataclass

from streamforge.cdc.config import DebeziumServerConfig
from streamforge.config import Config
from streamforge.naming import PREFIX

__all__ = ["Subscription", "Topic", "Topology", "topology"]


@dataclass(frozen=True)
class Topic:
    id: str
    purpose: str


@dataclass(frozen=True)
class Subscription:
    id: str
    topic: str
    consumer: str  # the workload that reads it: analytics, cdc, alert_dispatcher or operators
    purpose: str
    dataflow: bool = False  # read by a Dataflow job (no dead-letter topic: see the module docstring)
    push: bool = False  # pushed to the consumer's HTTPS endpoint (authenticated)
    table: str | None = None  # CDC: the source table its topic carries


@dataclass(frozen=True)
class Topology:
    topics: tuple[Topic, ...]
    subscriptions: tuple[Subscription, ...]
    undeliverable: str  # the topic every non-Dataflow subscription dead-letters to
    cdc_subscription_pattern: str  # the CDC job's input: the subscription id with {table}

    def topic(self, topic_id: str) -> Topic:
        return next(t for t in self.topics if t.id == topic_id)

    def consumed_by(self, consumer: str) -> tuple[Subscription, ...]:
        return tuple(s for s in self.subscriptions if s.consumer == consumer)

    def subscription(self, consumer: str, topic: str) -> Subscription:
        return next(s for s in self.subscriptions if s.consumer == consumer and s.topic == topic)


def topology(config: Config, debezium: DebeziumServerConfig | None = None, prefix: str = PREFIX) -> Topology:
    """The deployment's topics and subscriptions; ``debezium=None`` leaves CDC out."""
    t = config.topics
    topics = [
        Topic(t.clickstream, "clickstream events (simulator, ingest function)"),
        Topic(t.orders, "order events (simulator, ingest function)"),
        Topic(t.fraud_alerts, "fraud alerts from the analytics job, for the alert dispatcher"),
        Topic(t.dead_letter, "the pipelines' dead letters: the original payload and the reason"),
        Topic(t.undeliverable, "messages a subscription's consumer did not take after its delivery attempts"),
    ]
    subscriptions = [
        Subscription(
            f"{prefix}-analytics-clickstream",
            t.clickstream,
            "analytics",
            "the analytics job's clickstream",
            dataflow=True,
        ),
        Subscription(f"{prefix}-analytics-orders", t.orders, "analytics", "the analytics job's orders", dataflow=True),
        Subscription(
            f"{prefix}-alert-dispatcher",
            t.fraud_alerts,
            "alert_dispatcher",
            "pushes each alert to the alert dispatcher function",
            push=True,
        ),
        Subscription(
            f"{prefix}-dead-letters",
            t.dead_letter,
            "operators",
            "keeps the pipelines' dead letters for inspection and replay",
        ),
    ]
    cdc_pattern = f"{prefix}-cdc-{{table}}"
    if debezium is not None:
        for qualified in debezium.tables:
            table = qualified.split(".", 1)[-1]
            topic = debezium.topic(qualified)
            topics.append(Topic(topic, f"Debezium change events of {qualified}"))
            subscriptions.append(
                Subscription(
                    cdc_pattern.format(table=table),
                    topic,
                    "cdc",
                    f"the CDC job's changes of {qualified}",
                    dataflow=True,
                    table=table,
                )
            )
            if table == "products":
                subscriptions.append(
                    Subscription(
                        f"{prefix}-analytics-catalog",
                        topic,
                        "analytics",
                        "the product catalogue for revenue by category",
                        dataflow=True,
                        table=table,
                    )
                )
        topics.append(Topic(debezium.heartbeat_topic, "Debezium heartbeats (no subscriber needs them)"))
    subscriptions.append(
        Subscription(
            f"{prefix}-undeliverable",
            t.undeliverable,
            "operators",
            "keeps undeliverable messages for inspection and replay",
        )
    )
    return Topology(tuple(topics), tuple(subscriptions), t.undeliverable, cdc_pattern)
