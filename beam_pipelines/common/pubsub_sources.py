"""Before a local streaming run: every Pub/Sub source must exist.

Beam's local Pub/Sub read meets a missing subscription with four logged 404s, "Giving up",
and then a pipeline that neither reads nor ends. Checking first turns that into one precise
error: which option, which subscription, on which server, and how to create it.
"""

from __future__ import annotations

import os
from typing import Iterable

from google.api_core import exceptions
from google.cloud import pubsub_v1

from beam_pipelines.common.io import SpecError

__all__ = ["check_sources_exist"]


def check_sources_exist(sources: Iterable[tuple[str, str]], timeout: float = 10.0) -> None:
    """``sources``: (option, projects/P/subscriptions/S or projects/P/topics/T). SpecError
    naming every one that does not exist, or the server when it cannot be asked."""
    server = (
        f"the Pub/Sub emulator at {os.environ['PUBSUB_EMULATOR_HOST']}"
        if os.environ.get("PUBSUB_EMULATOR_HOST")
        else "Pub/Sub"
    )
    missing: list[str] = []
    subscriber = publisher = None
    for option, path in sources:
        try:
            if "/subscriptions/" in path:
                subscriber = subscriber or pubsub_v1.SubscriberClient()
                subscriber.get_subscription(subscription=path, timeout=timeout)
            else:
                publisher = publisher or pubsub_v1.PublisherClient()
                publisher.get_topic(topic=path, timeout=timeout)
        except exceptions.NotFound:
            missing.append(f"{option} pubsub://{path}")
        except exceptions.GoogleAPICallError as exc:
            raise SpecError(f"{option} pubsub://{path}: cannot ask {server} whether it exists: {exc.message}") from None
        except exceptions.RetryError as exc:
            raise SpecError(f"{option} pubsub://{path}: {server} did not answer ({exc})") from None
    if missing:
        raise SpecError(
            f"no such subscription or topic on {server}: {'; '.join(missing)}. Create them first: "
            "`streamforge pubsub create --project PROJECT` makes the deployment's topics and subscriptions"
        )
