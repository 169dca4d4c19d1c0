"""Pub/Sub: the topics and subscriptions of ``streamforge.topology``, their failure handling and IAM.

Subscriptions a Dataflow job reads have no dead-letter topic or retry policy: Dataflow does
not support them (the pipelines dead-letter what they cannot use themselves, with the
reason). Every other subscription retries with exponential backoff and then forwards to the
``undeliverable`` topic; the Pub/Sub service agent may publish there and acknowledge the
source. Message retention keeps a week of unacknowledged messages (``messageRetention``).

Pub/Sub schemas are not attached to any topic: the producers publish plain JSON (the
simulator, the ingest function, the analytics job) or Debezium's JSON envelopes, and a Pub/Sub
Avro schema with JSON encoding wants Avro's JSON form (unions wrapped as ``{"string": ...}``),
which none of them writes. More to the point, a schema on the topic would make Pub/Sub refuse
a malformed event at publish time, so it would never reach the dead letters with its reason:
validation stays in the pipelines, against the same ``.avsc`` files.
"""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from infra.component import Area, member
from infra.identities import Identities
from infra.settings import Settings
from streamforge.topology import Subscription, Topology

__all__ = ["CONSUMERS", "MAX_DELIVERY_ATTEMPTS", "Messaging"]

#: consumer of a pull subscription -> the workload that reads it (operators are people).
CONSUMERS = {"analytics": "analytics", "cdc": "cdc-job"}
#: Deliveries before a message goes to the undeliverable topic.
MAX_DELIVERY_ATTEMPTS = 10
_RETRY = {"minimum_backoff": "10s", "maximum_backoff": "600s"}


class Messaging(Area):
    def __init__(
        self, settings: Settings, topology: Topology, identities: Identities, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("Messaging", "messaging", opts)
        self.settings, self.topology, self.identities = settings, topology, identities
        # the Pub/Sub service agent exists once asked for: create it rather than bind a name that may not exist yet
        agent = gcp.projects.ServiceIdentity(
            "pubsub-service-agent", project=settings.project, service="pubsub.googleapis.com", opts=self.child
        )
        self.service_agent = member(agent.email)
        self.topics = {
            topic.id: gcp.pubsub.Topic(
                f"topic-{topic.id}", project=settings.project, name=topic.id, labels=settings.labels, opts=self.child
            )
            for topic in topology.topics
        }
        self.undeliverable_publisher = gcp.pubsub.TopicIAMMember(
            "undeliverable-publisher",
            project=settings.project,
            topic=self.topics[topology.undeliverable].name,
            role="roles/pubsub.publisher",
            member=self.service_agent,
            opts=self.child,
        )
        self.subscriptions: dict[str, gcp.pubsub.Subscription] = {}
        for subscription in topology.subscriptions:
            if not subscription.push:  # push subscriptions need their endpoint: the area that deploys it subscribes
                self.subscribe(subscription, self)
        self.register_outputs({"topics": list(self.topics), "subscriptions": list(self.subscriptions)})

    def topic_path(self, topic_id: str) -> str:
        return f"projects/{self.settings.project}/topics/{topic_id}"

    def subscription_url(self, subscription_id: str) -> str:
        """The pipelines' input form of a subscription: pubsub://projects/P/subscriptions/S."""
        return f"pubsub://projects/{self.settings.project}/subscriptions/{subscription_id}"

    def subscribe(
        self,
        subscription: Subscription,
        parent: pulumi.Resource,
        push_config: pulumi.Input[dict] | None = None,
        depends_on: list[pulumi.Resource] | None = None,
    ) -> gcp.pubsub.Subscription:
        """Creates ``subscription`` (a child of ``parent``) with the failure handling its
        consumer supports, and the IAM its consumer and the service agent need on it."""
        child = pulumi.ResourceOptions(parent=parent)
        sink = subscription.topic == self.topology.undeliverable  # dead-lettering to itself would loop
        handled = not subscription.dataflow and not sink
        resource = gcp.pubsub.Subscription(
            f"sub-{subscription.id}",
            project=self.settings.project,
            name=subscription.id,
            topic=self.topics[subscription.topic].id,
            labels=self.settings.labels,
            ack_deadline_seconds=60,
            message_retention_duration=self.settings.message_retention,
            expiration_policy={"ttl": ""},  # never expires while idle (a stopped job must not lose its input)
            dead_letter_policy={
                "dead_letter_topic": self.topics[self.topology.undeliverable].id,
                "max_delivery_attempts": MAX_DELIVERY_ATTEMPTS,
            }
            if handled
            else None,
            retry_policy=_RETRY if handled else None,
            push_config=push_config,
            opts=pulumi.ResourceOptions(parent=parent, depends_on=depends_on),
        )
        self.subscriptions[subscription.id] = resource
        if handled:
            gcp.pubsub.SubscriptionIAMMember(
                f"sub-{subscription.id}-service-agent",
                project=self.settings.project,
                subscription=resource.name,
                role="roles/pubsub.subscriber",
                member=self.service_agent,
                opts=child,
            )
        workload = CONSUMERS.get(subscription.consumer)
        if workload is not None and workload in self.identities.accounts:
            # viewer: Dataflow reads the subscription's metadata to track its backlog and watermark
            for role in ("roles/pubsub.subscriber", "roles/pubsub.viewer"):
                gcp.pubsub.SubscriptionIAMMember(
                    f"sub-{subscription.id}-{workload}-{role.split('.')[-1]}",
                    project=self.settings.project,
                    subscription=resource.name,
                    role=role,
                    member=self.identities.member(workload),
                    opts=child,
                )
        return resource

    def allow_publish(self, topic_id: str, workload: str, parent: pulumi.Resource) -> gcp.pubsub.TopicIAMMember:
        return gcp.pubsub.TopicIAMMember(
            f"topic-{topic_id}-{workload}-publisher",
            project=self.settings.project,
            topic=self.topics[topic_id].name,
            role="roles/pubsub.publisher",
            member=self.identities.member(workload),
            opts=pulumi.ResourceOptions(parent=parent),
        )
