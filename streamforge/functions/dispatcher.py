"""The alert dispatcher: a Pub/Sub message in, the alert on every webhook that wants it.

It takes the message two ways: a Pub/Sub push request (``handle_push``: what the
infrastructure program deploys, an authenticated push subscription with a dead-letter
topic), or a CloudEvent (``handle``): Eventarc delivers each message of the fraud-alerts
topic as a CloudEvent of type ``google.cloud.pubsub.topic.v1.messagePublished``. Either way
the message is ``{"message": {"data": <base64 alert JSON>, "attributes": ..., "messageId":
...}, "subscription": ...}``.

What happens to an alert:

- it does not decode or validate: logged with the reason (ERROR) and acknowledged;
- no webhook's filter matches: logged (INFO) and acknowledged;
- otherwise it is POSTed to each matching webhook not already settled in the ledger; 2xx and
  permanent rejections are recorded there; if any delivery is retriable the function raises
  ``RetryDelivery``, functions-framework answers 500 and Pub/Sub retries the message later;
  the webhooks that already took it are skipped then.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import orjson

from streamforge.config import Config, load_config
from streamforge.functions.delivery import DeliveryResult, Outcome, deliver
from streamforge.functions.ledger import LEDGER_ENV, DeliveryLedger, open_ledger
from streamforge.functions.logs import log
from streamforge.functions.webhooks import Webhook, parse_webhooks
from streamforge.schemas import InvalidEvent, get_schema

__all__ = [
    "PUBSUB_MESSAGE_PUBLISHED",
    "AlertDispatcher",
    "DispatchReport",
    "InvalidMessage",
    "RetryDelivery",
    "decode_alert",
    "decode_push",
]

PUBSUB_MESSAGE_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"


class InvalidMessage(ValueError):
    """The CloudEvent or its Pub/Sub message is not a fraud alert (the message says why)."""


class RetryDelivery(RuntimeError):
    """At least one webhook failed in a way worth retrying; raising it makes Pub/Sub redeliver."""


@dataclass
class DispatchReport:
    """What one invocation did, for logs, tests and benchmarks."""

    alert_id: str | None
    results: list[DeliveryResult] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # settled on an earlier attempt
    unmatched: list[str] = field(default_factory=list)  # filtered out

    def names(self, outcome: Outcome) -> list[str]:
        return [r.webhook for r in self.results if r.outcome is outcome]


def decode_alert(event: Any) -> tuple[dict[str, Any], str | None]:
    """The validated alert (Python form) and the Pub/Sub message id of a CloudEvent."""
    event_type = event["type"]
    if event_type != PUBSUB_MESSAGE_PUBLISHED:
        raise InvalidMessage(f"CloudEvent type {event_type!r} is not {PUBSUB_MESSAGE_PUBLISHED}")
    data = event.get_data()
    if isinstance(data, (bytes, str)):
        raise InvalidMessage(
            'CloudEvent data is not a JSON object (expected a Pub/Sub push envelope {"message": {"data": ...}})'
        )
    return _decode_message(
        data.get("message") if isinstance(data, dict) else None,
        "CloudEvent data has no 'message' object: not a Pub/Sub messagePublished event",
    )


def decode_push(body: bytes) -> tuple[dict[str, Any], str | None]:
    """The validated alert and message id of a Pub/Sub push request's body,
    ``{"message": {"data": <base64>, "messageId": ...}, "subscription": ...}``."""
    try:
        envelope = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidMessage("push request body is not JSON (expected a Pub/Sub push envelope)") from None
    return _decode_message(
        envelope.get("message") if isinstance(envelope, dict) else None,
        "push request has no 'message' object: not a Pub/Sub push envelope",
    )


def _decode_message(message: Any, missing: str) -> tuple[dict[str, Any], str | None]:
    if not isinstance(message, dict):
        raise InvalidMessage(missing)
    message_id = message.get("messageId") or message.get("message_id")
    encoded = message.get("data")
    if not isinstance(encoded, str) or not encoded:
        raise InvalidMessage(f"Pub/Sub message {message_id} has no data")
    try:
        payload = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidMessage(f"Pub/Sub message {message_id}: data is not base64") from None
    try:
        return get_schema("fraud_alert").from_json(payload), message_id
    except InvalidEvent as exc:
        raise InvalidMessage(f"Pub/Sub message {message_id}: {exc}") from None


class AlertDispatcher:
    def __init__(self, webhooks: tuple[Webhook, ...], ledger: DeliveryLedger, timeout: float):
        self.webhooks, self.ledger, self.timeout = webhooks, ledger, timeout

    @classmethod
    def from_environment(
        cls, environ: Mapping[str, str] | None = None, config: Config | None = None
    ) -> AlertDispatcher:
        """Webhooks from STREAMFORGE_WEBHOOKS, the ledger from STREAMFORGE_ALERT_LEDGER, tunables
        from the config (STREAMFORGE_CONFIG or the embedded defaults). Raises on bad settings, so a
        misconfigured deployment fails at start rather than at its first alert."""
        environ = os.environ if environ is None else environ
        config = config or load_config()
        settings = config.alert_dispatcher
        dispatcher = cls(
            parse_webhooks(environ),
            open_ledger(environ.get(LEDGER_ENV), settings.ledger_ttl),
            settings.webhook_timeout.total_seconds(),
        )
        log(
            "INFO",
            "alert dispatcher ready",
            webhooks=[w.name for w in dispatcher.webhooks],
            ledger=dispatcher.ledger.describe(),
            timeout_s=dispatcher.timeout,
        )
        if environ.get("K_SERVICE") and not environ.get(LEDGER_ENV):
            log(
                "WARNING",
                f"{LEDGER_ENV} is not set: deliveries are remembered by this instance only, so a retry "
                "on another instance may repeat them",
            )
        return dispatcher

    def handle(self, event: Any) -> DispatchReport:
        """Dispatches one CloudEvent; raises RetryDelivery when Pub/Sub should redeliver it."""
        try:
            alert, message_id = decode_alert(event)
        except InvalidMessage as exc:
            log("ERROR", "alert rejected: not retried", reason=str(exc), cloud_event_id=event["id"])
            return DispatchReport(None)
        return self.dispatch(alert, message_id)

    def handle_push(self, body: bytes) -> DispatchReport:
        """Dispatches one Pub/Sub push request (an authenticated push subscription, the way the
        infrastructure program deploys it: unlike an Eventarc trigger it has a dead-letter
        topic); raises RetryDelivery when Pub/Sub should redeliver it."""
        try:
            alert, message_id = decode_push(body)
        except InvalidMessage as exc:
            log("ERROR", "alert rejected: not retried", reason=str(exc))
            return DispatchReport(None)
        return self.dispatch(alert, message_id)

    def dispatch(self, alert: Mapping[str, Any], message_id: str | None = None) -> DispatchReport:
        alert_id = alert["alert_id"]
        report = DispatchReport(alert_id)
        targets = []
        for webhook in self.webhooks:
            (targets if webhook.matches(alert) else report.unmatched).append(webhook)
        if not targets:
            log(
                "INFO",
                "alert matches no webhook",
                alert_id=alert_id,
                alert_type=alert["alert_type"],
                risk_score=alert["risk_score"],
                message_id=message_id,
            )
            return report
        settled = self.ledger.settled(alert_id)
        settle: dict[str, str] = {}
        for webhook in targets:
            if webhook.name in settled:
                report.skipped.append(webhook.name)
                continue
            result = deliver(webhook, alert, self.timeout)
            report.results.append(result)
            fields = dict(
                alert_id=alert_id,
                webhook=webhook.name,
                status=result.status,
                reason=result.reason,
                elapsed_ms=round(result.elapsed_ms, 1),
                message_id=message_id,
            )
            if result.outcome is Outcome.DELIVERED:
                settle[webhook.name] = "delivered"
                log("INFO", "alert delivered", **fields)
            elif result.outcome is Outcome.REJECTED:
                settle[webhook.name] = f"rejected: {result.reason}"
                log("ERROR", "webhook rejected the alert: not retried", **fields)
            else:
                log("WARNING", "webhook delivery failed: will be retried", **fields)
        if settle:
            self.ledger.record(alert_id, settle)
        retry = [r for r in report.results if r.outcome is Outcome.RETRY]
        if retry:
            raise RetryDelivery(
                f"alert {alert_id}: "
                + "; ".join(f"{r.webhook}: {r.reason}" for r in retry)
                + (
                    f" (already delivered to {', '.join(report.names(Outcome.DELIVERED) + report.skipped)})"
                    if report.names(Outcome.DELIVERED) or report.skipped
                    else ""
                )
            )
        return report
