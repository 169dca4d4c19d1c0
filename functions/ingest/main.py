"""Cloud Function (HTTP): batches of clickstream and order events from web and mobile clients.

Environment (docs/functions.md): STREAMFORGE_INGEST_API_KEYS (from Secret Manager),
STREAMFORGE_INGEST_OUTPUT (pubsub://PROJECT; default pubsub://$GOOGLE_CLOUD_PROJECT),
optionally STREAMFORGE_CONFIG. Each event is answered as accepted or rejected with the reason.
"""

import flask
import functions_framework

from streamforge.functions.ingest import IngestService

# Read once per instance; a bad setting fails the deployment's start, not every request.
service = IngestService.from_environment()


@functions_framework.http
def ingest(request: flask.Request) -> flask.Response:
    answer = service.handle(request.method, request.headers, request.stream, request.content_length)
    return flask.Response(
        answer.json() if answer.status != 204 else b"", answer.status, answer.headers, mimetype="application/json"
    )
