"""Creating a deployment's topics and subscriptions (``streamforge.topology``) on Pub/Sub: what
``streamforge pubsub create`` does for the emulator, so a local run has exactly the names the
infrastructure program deploys.

Idempotent: what exists is left as it is. The emulator takes the subscriptions' settings as
they are declared, but does not act on dead-letter or retry policies, so they are not set
here; on Google Cloud the infrastructure program creates all of it (docs/infra.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from google.api_core import exceptions

from streamforge.naming import PROJECT_ID
from streamforge.topology import Topology

__all__ = ["Created", "ProjectIdError", "check_project", "create_topology"]


class ProjectIdError(ValueError):
    """The project id would be refused by Pub/Sub paths and the pipelines' URLs."""


@dataclass
class Created:
    topics: list[str] = field(default_factory=list)  # created now
    subscriptions: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)  # already there, left alone
    skipped: list[str] = field(default_factory=list)  # push subscriptions without an endpoint


def check_project(project: str) -> str:
    if not PROJECT_ID.match(project):
        raise ProjectIdError(
            f"project {project!r}: a Google Cloud project id is 6-30 characters of a-z, 0-9 and -, "
            "starting with a letter and not ending with -, e.g. streamforge-local"
        )
    return project


def create_topology(
    publisher: Any, subscriber: Any, project: str, topology: Topology, push_endpoints: dict[str, str] | None = None
) -> Created:
    """Creates ``topology``'s topics and subscriptions in ``project``. ``push_endpoints`` maps a
    push subscription's consumer (``alert_dispatcher``) to the URL Pub/Sub pushes to."""
    check_project(project)
    created = Created()
    for topic in topology.topics:
        path = publisher.topic_path(project, topic.id)
        try:
            publisher.create_topic(name=path)
            created.topics.append(topic.id)
        except exceptions.AlreadyExists:
            created.existing.append(topic.id)
    for subscription in topology.subscriptions:
        request: dict[str, Any] = {
            "name": subscriber.subscription_path(project, subscription.id),
            "topic": publisher.topic_path(project, subscription.topic),
            "ack_deadline_seconds": 60,
        }
        if subscription.push:
            endpoint = (push_endpoints or {}).get(subscription.consumer)
            if endpoint is None:
                created.skipped.append(subscription.id)
                continue
            request["push_config"] = {"push_endpoint": endpoint}
        try:
            subscriber.create_subscription(request=request)
            created.subscriptions.append(subscription.id)
        except exceptions.AlreadyExists:
            created.existing.append(subscription.id)
    return created
