"""Kafka inputs: the ``kafka://`` URL, its options, and the client settings it gives.

    kafka://HOST:PORT[,HOST:PORT...][/TOPIC][?OPTION=VALUE&...]

Options (none is a secret; secrets come only from the environment, below):

- ``group``: the consumer group. A bounded read with a group starts from the group's
  committed offsets and commits where it stopped once the job has written its results;
  without one it reads from ``start`` and commits nothing. Streaming reads always use a group
  (``streamforge-<job>`` by default) and commit what a drained run has written.
- ``start``: ``earliest``, ``latest``, ``committed`` (the group's offsets, else earliest) or an
  RFC 3339 time (the first offset at or after it). Default: ``committed`` with a group,
  ``earliest`` without.
- ``until=end``: bounded, to the end offsets seen when the job starts (batch mode, the same
  results as the same events in files). Without it the read is unbounded (streaming).
- ``security``: ``plaintext`` (default), ``ssl``, ``sasl_plaintext`` or ``sasl_ssl``;
  ``mechanism``: ``PLAIN`` (default with SASL; Confluent Cloud, Managed Kafka on Google
  Cloud), ``SCRAM-SHA-256`` or ``SCRAM-SHA-512``; ``ca``: a CA bundle file for SSL.
- ``registry``: a Confluent Schema Registry URL for schema ids the project's own schemas do
  not have (streamforge/schemas/remote.py; lookups are cached).

Environment: ``STREAMFORGE_KAFKA_USERNAME`` and ``STREAMFORGE_KAFKA_PASSWORD`` (SASL),
``STREAMFORGE_SCHEMA_REGISTRY_AUTH`` (``USER:PASSWORD`` for the registry). A URL carrying a
password or user info is refused: it would end up in shell history, process lists and logs.
``str()`` of a parsed URL is safe to print. On a remote runner (Beam's Kafka IO, whose consumer
settings are part of the job graph) SASL and ``ca`` are refused:
beam_pipelines/common/kafka_io.py says why.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from streamforge.schemas.remote import AUTH_ENV as REGISTRY_AUTH_ENV
from streamforge.timeutil import parse_timestamp

__all__ = [
    "PASSWORD_ENV",
    "REGISTRY_AUTH_ENV",
    "USERNAME_ENV",
    "KafkaUrl",
    "KafkaUrlError",
    "PartitionRange",
    "parse_kafka_url",
]

USERNAME_ENV = "STREAMFORGE_KAFKA_USERNAME"
PASSWORD_ENV = "STREAMFORGE_KAFKA_PASSWORD"

_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][-A-Za-z0-9.]*):(\d{1,5})$")
#: Kafka's own rule for topic names.
TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_SECURITY = ("plaintext", "ssl", "sasl_plaintext", "sasl_ssl")
_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_OPTIONS = ("group", "start", "until", "security", "mechanism", "ca", "registry")


class KafkaUrlError(ValueError):
    """A kafka:// URL that cannot be used; the message says which part and why."""


@dataclass(frozen=True)
class PartitionRange:
    """Offsets ``start`` (inclusive) to ``end`` (exclusive) of one partition."""

    topic: str
    partition: int
    start: int
    end: int

    @property
    def size(self) -> int:
        return max(0, self.end - self.start)


@dataclass(frozen=True)
class KafkaUrl:
    bootstrap: str  # HOST:PORT[,HOST:PORT]
    topic: str = ""
    group: str | None = None
    start: str = "earliest"  # earliest | latest | committed | an RFC 3339 time
    bounded: bool = False
    security: str = "plaintext"
    mechanism: str = "PLAIN"
    ca: str | None = None
    registry: str | None = None
    #: A bounded read's plan, fixed when the job starts (beam_pipelines/common/kafka.py).
    ranges: tuple[PartitionRange, ...] | None = field(default=None, compare=False)

    def with_topic(self, topic: str) -> KafkaUrl:
        return replace(self, topic=topic)

    @property
    def start_time(self) -> datetime | None:
        return None if self.start in ("earliest", "latest", "committed") else parse_timestamp(self.start)

    def client_settings(self, error: type[Exception] = KafkaUrlError) -> dict[str, Any]:
        """librdkafka settings for this broker, credentials from the environment."""
        settings: dict[str, Any] = {"bootstrap.servers": self.bootstrap, "security.protocol": self.security.upper()}
        if self.ca:
            settings["ssl.ca.location"] = self.ca
        if self.security.startswith("sasl"):
            username, password = os.environ.get(USERNAME_ENV), os.environ.get(PASSWORD_ENV)
            if not username or not password:
                raise error(
                    f"{self}: security={self.security} needs {USERNAME_ENV} and {PASSWORD_ENV} in the "
                    "environment (credentials never go in the URL)"
                )
            settings.update({"sasl.mechanism": self.mechanism, "sasl.username": username, "sasl.password": password})
        return settings

    def __str__(self) -> str:
        options = {
            "group": self.group,
            "start": None if self.start == _default_start(self.group) else self.start,
            "until": "end" if self.bounded else None,
            "security": None if self.security == "plaintext" else self.security,
            "mechanism": self.mechanism if self.security.startswith("sasl") and self.mechanism != "PLAIN" else None,
            "ca": self.ca,
            "registry": self.registry,
        }
        query = urlencode({k: v for k, v in options.items() if v is not None}, safe="/:")
        return f"kafka://{self.bootstrap}/{self.topic}" + (f"?{query}" if query else "")


def _default_start(group: str | None) -> str:
    return "committed" if group else "earliest"


def parse_kafka_url(url: str, option: str = "--input", default_group: str | None = None) -> KafkaUrl:
    """``url`` checked part by part; KafkaUrlError names the option, the part and the rule.
    An unbounded read without a group reads with ``default_group`` (naming.consumer_group)."""
    if not url.startswith("kafka://"):
        raise KafkaUrlError(f"{option} {url}: expected kafka://HOST:PORT[,HOST:PORT]/TOPIC")
    rest = url[len("kafka://") :]
    rest, _, query = rest.partition("?")
    servers, _, topic = rest.partition("/")
    if "@" in servers:
        raise KafkaUrlError(
            f"{option} kafka://…@{servers.rsplit('@', 1)[1]}: credentials do not belong in the URL; "
            f"set {USERNAME_ENV} and {PASSWORD_ENV} and add ?security=sasl_ssl"
        )
    if not servers:
        raise KafkaUrlError(f"{option} {url}: no HOST:PORT after kafka://")
    for server in servers.split(","):
        match = _HOST_PORT.match(server)
        if not match or not 0 < int(match.group(2)) < 65536:
            raise KafkaUrlError(f"{option} {url}: {server!r} is not HOST:PORT (a port 1-65535)")
    if topic and not TOPIC_NAME.match(topic):
        raise KafkaUrlError(f"{option} {url}: topic {topic!r} is not a Kafka topic name (1-249 of A-Z a-z 0-9 . _ -)")
    options: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        if name in ("password", "username", "user", "sasl.password", "sasl.username", "secret", "key"):
            raise KafkaUrlError(
                f"{option}: {name}= does not belong in the URL (it would be logged); set "
                f"{USERNAME_ENV} and {PASSWORD_ENV} instead"
            )
        if name not in _OPTIONS:
            raise KafkaUrlError(
                f"{option} {_without_query(url)}: unknown option {name!r}; expected one of {', '.join(_OPTIONS)}"
            )
        if name in options:
            raise KafkaUrlError(f"{option} {_without_query(url)}: option {name} given twice")
        options[name] = value
    group = options.get("group") or (default_group if options.get("until") is None else None)
    if group is not None and not re.fullmatch(r"[A-Za-z0-9._-]{1,255}", group):
        raise KafkaUrlError(f"{option}: group {group!r}: 1-255 of A-Z a-z 0-9 . _ -")
    start = options.get("start", _default_start(group))
    if start not in ("earliest", "latest", "committed"):
        try:
            parse_timestamp(start)
        except ValueError:
            raise KafkaUrlError(
                f"{option}: start={start!r}: expected earliest, latest, committed or an RFC 3339 "
                "time such as 2026-12-01T00:00:00Z"
            ) from None
    if start == "committed" and group is None:
        raise KafkaUrlError(f"{option}: start=committed needs a consumer group (?group=NAME)")
    until = options.get("until")
    if until not in (None, "end"):
        raise KafkaUrlError(
            f"{option}: until={until!r}: the only bound is until=end (the end offsets when the job starts)"
        )
    security = options.get("security", "plaintext").lower()
    if security not in _SECURITY:
        raise KafkaUrlError(f"{option}: security={security!r}: expected one of {', '.join(_SECURITY)}")
    mechanism = options.get("mechanism", "PLAIN").upper()
    if mechanism not in _MECHANISMS:
        raise KafkaUrlError(f"{option}: mechanism={mechanism!r}: expected one of {', '.join(_MECHANISMS)}")
    registry = options.get("registry") or None
    if registry is not None and (not re.match(r"^https?://[^\s@/]+", registry)):
        raise KafkaUrlError(
            f"{option}: registry={registry!r}: expected http(s)://HOST[:PORT][/PATH], without "
            f"credentials (set {REGISTRY_AUTH_ENV})"
        )
    return KafkaUrl(
        bootstrap=servers,
        topic=topic,
        group=group,
        start=start,
        bounded=until == "end",
        security=security,
        mechanism=mechanism,
        ca=options.get("ca") or None,
        registry=registry,
    )


def _without_query(url: str) -> str:
    return url.partition("?")[0]
