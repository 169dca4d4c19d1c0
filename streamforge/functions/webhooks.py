"""Webhook definitions for the alert dispatcher, and what each kind of webhook receives.

Webhooks are declared in the ``STREAMFORGE_WEBHOOKS`` environment variable, a JSON list::

    [{"name": "risk-team", "url_env": "RISK_WEBHOOK_URL", "secret_env": "RISK_WEBHOOK_SECRET",
      "alert_types": ["CARD_TESTING", "RAPID_ORDERS"], "min_risk_score": 0.7},
     {"name": "slack", "format": "slack", "url_env": "SLACK_WEBHOOK_URL"}]

Secrets (signing keys, and URLs that embed a token such as Slack's) are named by the
environment variable that holds them (``*_env``), which Cloud Functions fills from Secret
Manager; they never appear in the list itself, in errors or in logs.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import urlsplit

import orjson

from streamforge.events import FraudPattern
from streamforge.functions.destinations import LOOPBACK_HOSTS, DestinationRefused, check_host
from streamforge.functions.signing import signature_headers
from streamforge.schemas import get_schema
from streamforge.timeutil import format_timestamp

__all__ = ["FORMATS", "WEBHOOKS_ENV", "Webhook", "WebhookConfigError", "parse_webhooks", "slack_message"]

WEBHOOKS_ENV = "STREAMFORGE_WEBHOOKS"
#: ``json``: the alert as JSON, signed; ``slack``: a Slack incoming-webhook message.
FORMATS = ("json", "slack")
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_KEYS = ("name", "format", "url", "url_env", "secret_env", "alert_types", "min_risk_score", "allow_private")


class WebhookConfigError(ValueError):
    """``STREAMFORGE_WEBHOOKS`` (or a variable it names) is invalid; the message says where."""


@dataclass(frozen=True)
class Webhook:
    """One receiver, with the filter that selects the alerts it gets."""

    name: str
    format: str
    url: str = field(repr=False)
    secret: str | None = field(default=None, repr=False)
    alert_types: frozenset[str] | None = None  # None: every type
    min_risk_score: float = 0.0
    allow_private: bool = False  # may reach private and loopback addresses (destinations.py)

    def matches(self, alert: Mapping[str, Any]) -> bool:
        if self.alert_types is not None and alert["alert_type"] not in self.alert_types:
            return False
        return alert["risk_score"] >= self.min_risk_score

    def request(self, alert: Mapping[str, Any], now: float | None = None) -> tuple[bytes, dict[str, str]]:
        """The body and headers to POST for ``alert`` (its validated Python form)."""
        if self.format == "slack":
            return orjson.dumps(slack_message(alert)), {"Content-Type": "application/json"}
        body = get_schema("fraud_alert").to_json(alert, validate=False)
        assert self.secret is not None  # parse_webhooks requires one for the json format
        return body, {
            "Content-Type": "application/json",
            **signature_headers(self.secret, alert["alert_id"], body, now),
        }


def parse_webhooks(environ: Mapping[str, str]) -> tuple[Webhook, ...]:
    """The webhooks ``STREAMFORGE_WEBHOOKS`` declares, with secrets read from ``environ``."""
    text = environ.get(WEBHOOKS_ENV, "").strip()
    if not text:
        raise WebhookConfigError(f"{WEBHOOKS_ENV} is not set: declare the webhooks as a JSON list (docs/functions.md)")
    try:
        declared = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise WebhookConfigError(f"{WEBHOOKS_ENV} is not valid JSON: {exc}") from None
    if not isinstance(declared, list) or not declared:
        raise WebhookConfigError(f"{WEBHOOKS_ENV} must be a non-empty JSON list of webhook objects")
    webhooks: list[Webhook] = []
    for index, entry in enumerate(declared):
        webhook = _parse_one(entry, f"{WEBHOOKS_ENV}[{index}]", environ)
        if any(w.name == webhook.name for w in webhooks):
            raise WebhookConfigError(f"{WEBHOOKS_ENV}[{index}]: name '{webhook.name}' is used twice")
        webhooks.append(webhook)
    return tuple(webhooks)


def _parse_one(entry: Any, where: str, environ: Mapping[str, str]) -> Webhook:
    if not isinstance(entry, dict):
        raise WebhookConfigError(f"{where}: expected an object, got {type(entry).__name__}")
    for key in entry:
        if key not in _KEYS:
            close = difflib.get_close_matches(key, _KEYS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise WebhookConfigError(f"{where}: unknown key '{key}'{hint}; known keys: {', '.join(_KEYS)}")
    name = entry.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise WebhookConfigError(
            f"{where}: 'name' must be 1-64 of a-z, 0-9, '-', '_' (starting with a letter or digit), got {name!r}"
        )
    where = f"{where} ('{name}')"
    fmt = entry.get("format", "json")
    if fmt not in FORMATS:
        raise WebhookConfigError(f"{where}: 'format' must be one of {', '.join(FORMATS)}, got {fmt!r}")
    allow_private = entry.get("allow_private", False)
    if not isinstance(allow_private, bool):
        raise WebhookConfigError(f"{where}: 'allow_private' must be true or false, got {allow_private!r}")
    url = _url(entry, where, environ, allow_private)
    secret = None
    if fmt == "json":
        if "secret_env" not in entry:
            raise WebhookConfigError(
                f"{where}: a json webhook needs 'secret_env', the variable holding its signing secret"
            )
        secret = _from_env(entry, "secret_env", where, environ)
        if len(secret) < 16:
            raise WebhookConfigError(f"{where}: the secret in ${entry['secret_env']} is shorter than 16 characters")
    elif "secret_env" in entry:
        raise WebhookConfigError(f"{where}: slack webhooks are not signed (the URL is the secret): drop 'secret_env'")
    alert_types = entry.get("alert_types")
    if alert_types is not None:
        known = [p.value for p in FraudPattern]
        if not isinstance(alert_types, list) or not alert_types or not all(t in known for t in alert_types):
            raise WebhookConfigError(
                f"{where}: 'alert_types' must be a non-empty list of {', '.join(known)}, got {alert_types!r}"
            )
        alert_types = frozenset(alert_types)
    score = entry.get("min_risk_score", 0.0)
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0.0 <= score <= 1.0:
        raise WebhookConfigError(f"{where}: 'min_risk_score' must be a number from 0 to 1, got {score!r}")
    return Webhook(name, fmt, url, secret, alert_types, float(score), allow_private)


def _from_env(entry: Mapping[str, Any], key: str, where: str, environ: Mapping[str, str]) -> str:
    variable = entry[key]
    if not isinstance(variable, str) or not variable:
        raise WebhookConfigError(f"{where}: '{key}' must name an environment variable, got {variable!r}")
    value = environ.get(variable, "").strip()
    if not value:
        raise WebhookConfigError(f"{where}: ${variable} (its {key}) is not set or empty")
    return value


def _url(entry: Mapping[str, Any], where: str, environ: Mapping[str, str], allow_private: bool) -> str:
    if ("url" in entry) == ("url_env" in entry):
        raise WebhookConfigError(
            f"{where}: give exactly one of 'url' and 'url_env' (use url_env when the URL holds a token)"
        )
    url = entry["url"] if "url" in entry else _from_env(entry, "url_env", where, environ)
    if not isinstance(url, str):
        raise WebhookConfigError(f"{where}: 'url' must be a string")
    try:
        parts = urlsplit(url)
        host, _ = parts.hostname or "", parts.port  # ValueError: a port that is not a number or out of range
    except ValueError:
        raise WebhookConfigError(f"{where}: the URL's host or port cannot be read") from None
    if (parts.scheme == "https" and host) or (parts.scheme == "http" and host in LOOPBACK_HOSTS):
        try:
            check_host(host, allow_private=allow_private)
        except DestinationRefused as exc:
            raise WebhookConfigError(f"{where}: {exc}") from None
        return url
    # Not the URL itself in the message: it may embed a token.
    raise WebhookConfigError(
        f"{where}: the URL must be https://HOST/... (http:// only for a receiver on "
        f"127.0.0.1 or localhost), got scheme {parts.scheme!r} and host {host!r}"
    )


def _mrkdwn(text: str) -> str:
    """Slack's three control characters, escaped as its message formatting requires."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(alert: Mapping[str, Any]) -> dict[str, Any]:
    """A readable Slack message: type, user, order, score and description (plus a text fallback)."""
    kind, user, order = alert["alert_type"], alert["user_id"], alert.get("order_id") or "none"
    score = f"{alert['risk_score']:.2f}"
    headline = f"Fraud alert: {kind} (risk {score})"
    description = _mrkdwn(alert["description"])
    return {
        "text": f"{headline}: user {_mrkdwn(user)}, order {_mrkdwn(order)}. {description}",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": headline}},
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": f"*Type*\n{kind}"},
                    {"type": "mrkdwn", "text": f"*Risk score*\n{score}"},
                    {"type": "mrkdwn", "text": f"*User*\n{_mrkdwn(user)}"},
                    {"type": "mrkdwn", "text": f"*Order*\n{_mrkdwn(order)}"},
                ],
            },
            {"type": "section", "text": {"type": "mrkdwn", "text": description}},
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": f"alert {_mrkdwn(alert['alert_id'])} · event {format_timestamp(alert['event_time'])} · "
                        f"detected {format_timestamp(alert['detected_at'])}",
                    }
                ],
            },
        ],
    }
