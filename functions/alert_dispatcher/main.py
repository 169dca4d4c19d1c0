"""Cloud Function: fraud alerts from the fraud-alerts Pub/Sub topic (through Eventarc) to webhooks.

Environment (docs/functions.md): STREAMFORGE_WEBHOOKS (the webhooks, their filters and the
variables holding their secrets), STREAMFORGE_ALERT_LEDGER (firestore://COLLECTION),
optionally STREAMFORGE_CONFIG. Raising makes functions-framework answer 500, and Pub/Sub
retries the message.
"""

import functions_framework
from cloudevents.http import CloudEvent

from streamforge.functions.dispatcher import AlertDispatcher

# Read once per instance; a bad setting fails the deployment's start, not every alert.
dispatcher = AlertDispatcher.from_environment()


@functions_framework.cloud_event
def dispatch_alert(cloud_event: CloudEvent) -> None:
    dispatcher.handle(cloud_event)
