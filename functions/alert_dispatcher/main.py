"""Cloud Function: fraud alerts from the fraud-alerts Pub/Sub topic to webhooks.

Two entry points over one dispatcher:

- ``dispatch_push`` (HTTP): the body of an authenticated Pub/Sub push subscription. This is
  how the infrastructure program deploys it (infra/cloud_functions.py): the subscription has a
  retry policy and a dead-letter topic, which an Eventarc trigger cannot have.
- ``dispatch_alert`` (CloudEvent): for an Eventarc trigger on the topic.

Environment (docs/functions.md): STREAMFORGE_WEBHOOKS (the webhooks, their filters and the
variables holding their secrets), STREAMFORGE_ALERT_LEDGER (firestore://COLLECTION),
optionally STREAMFORGE_CONFIG. Failing (an exception, a 500) makes Pub/Sub retry the message.
"""

import flask
import functions_framework
from cloudevents.http import CloudEvent

from streamforge.functions.dispatcher import AlertDispatcher

# Read once per instance; a bad setting fails the deployment's start, not every alert.
dispatcher = AlertDispatcher.from_environment()


@functions_framework.http
def dispatch_push(request: flask.Request) -> flask.Response:
    dispatcher.handle_push(request.get_data())
    return flask.Response(b"", 204)


@functions_framework.cloud_event
def dispatch_alert(cloud_event: CloudEvent) -> None:
    dispatcher.handle(cloud_event)
