"""The Flex Templates: one for the analytics job (sessions, revenue, fraud or all), one for CDC.

Their parameters are the contract between whoever launches a job (the Dataflow console's
form, ``gcloud dataflow flex-template run``, the infrastructure program) and the launcher
(launcher.py): each is named, labelled, described, typed and validated here, once. The
launcher parses exactly these; ``metadata`` and ``spec`` write them in the form Dataflow
reads (``metadata.json`` for ``gcloud dataflow flex-template build``; the whole spec file for
an upload of its own). The regexes are the ones the library checks the values with. The
analytics template's ``job`` is required and the CDC template has none: that is how the one
launcher tells them apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from beam_pipelines.cdc.pipeline import PUBSUB_TABLES_INPUT
from beam_pipelines.common.io import GCS_PATH, KAFKA_INPUT, PUBSUB_INPUT
from beam_pipelines.requests import ANALYTICS_JOBS, TOPIC
from streamforge.naming import BIGQUERY_DATASET

__all__ = ["TEMPLATES", "Parameter", "Template", "metadata", "spec"]


def _either(*patterns: str) -> str:
    """One regex matching any of ``patterns`` (each anchored ^...$)."""
    return "^(?:" + "|".join(p.removeprefix("^").removesuffix("$") for p in patterns) + ")$"


_STREAM_INPUT = _either(GCS_PATH.pattern, PUBSUB_INPUT.pattern, KAFKA_INPUT.pattern)
_KAFKA_HELP = (
    "kafka://HOST:PORT[,HOST:PORT]/TOPIC?group=NAME&start=committed|earliest|latest|TIME (streaming, "
    "Beam's Kafka IO; plaintext or security=ssl, no SASL: its password would be in the job graph)"
)
_TOML = r"^gs://[a-z0-9][-a-z0-9_.]{1,220}[a-z0-9]/.+\.toml$"


@dataclass(frozen=True)
class Parameter:
    name: str  # also the launcher's --name
    label: str
    help: str
    regex: str | None = None
    optional: bool = True
    type: str = "TEXT"  # a Dataflow ParameterType
    options: tuple[tuple[str, str], ...] = ()  # ENUM: (value, description)
    default: str | None = None  # what the launcher uses when the parameter is not given

    def metadata(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "name": self.name,
            "label": self.label,
            "helpText": self.help,
            "isOptional": self.optional,
            "paramType": self.type,
        }
        if self.regex:
            entry["regexes"] = [self.regex]
        if self.options:
            entry["enumOptions"] = [{"value": v, "label": v, "description": d} for v, d in self.options]
        if self.default is not None:
            entry["defaultValue"] = self.default
        return entry


@dataclass(frozen=True)
class Template:
    name: str  # the spec file's name: <name>.json
    title: str
    description: str
    parameters: tuple[Parameter, ...] = field(default_factory=tuple)

    def parameter(self, name: str) -> Parameter:
        return next(p for p in self.parameters if p.name == name)


_WAREHOUSE = Parameter(
    "warehouse",
    "BigQuery dataset",
    "Where the tables go: bigquery://PROJECT.DATASET (the dataset must exist; tables are created, partitioned "
    "and clustered as the event schemas declare).",
    BIGQUERY_DATASET.pattern,
    optional=False,
)
_CONFIG = Parameter(
    "config",
    "Settings file",
    "A TOML file in Cloud Storage overriding StreamForge's defaults (session gap, allowed lateness, fraud "
    "thresholds, dedup TTL, CDC replicas), e.g. gs://BUCKET/streamforge.toml. Default: the built-in settings.",
    _TOML,
    type="GCS_READ_FILE",
)

ANALYTICS = Template(
    "analytics",
    "StreamForge analytics",
    "Clickstream and order events -> user sessions, revenue per minute and fraud alerts in BigQuery, with dead "
    "letters. Pub/Sub and Kafka inputs stream; Cloud Storage inputs run as a batch job.",
    (
        Parameter(
            "job",
            "Job",
            "Which analytics to run; all runs the three in one job, reading each stream once.",
            "^(" + "|".join(ANALYTICS_JOBS) + ")$",
            optional=False,
            type="ENUM",
            options=(
                ("sessions", "clickstream -> user_sessions"),
                ("revenue", "orders -> revenue_per_minute, revenue_by_category_region"),
                ("fraud", "orders -> fraud_alerts (and the alerts topic)"),
                ("all", "all of the above"),
            ),
        ),
        Parameter(
            "input",
            "Input",
            "For sessions, revenue, fraud: pubsub://projects/P/subscriptions/S (streaming), "
            + _KAFKA_HELP
            + ", or gs://BUCKET/PATH of JSON lines, a glob allowed (batch). For all: gs://BUCKET/DIR holding "
            "clickstream.jsonl and orders.jsonl, kafka://HOST:PORT (each stream's topic from the settings), or "
            "give clickstream and orders.",
            _STREAM_INPUT,
        ),
        Parameter(
            "clickstream",
            "Clickstream input",
            "The clickstream for sessions and all: pubsub://projects/P/subscriptions/S, kafka://HOST:PORT/TOPIC "
            "or gs://BUCKET/PATH.",
            _STREAM_INPUT,
        ),
        Parameter(
            "orders",
            "Orders input",
            "The order events for revenue, fraud and all: pubsub://projects/P/subscriptions/S, "
            "kafka://HOST:PORT/TOPIC or gs://BUCKET/PATH.",
            _STREAM_INPUT,
        ),
        _WAREHOUSE,
        Parameter(
            "alerts_topic",
            "Fraud alerts topic",
            "Also publish every fraud alert (JSON) to this topic, projects/P/topics/T: the alert dispatcher "
            "function's input.",
            TOPIC.pattern,
            type="PUBSUB_TOPIC",
        ),
        Parameter(
            "dead_letter_topic",
            "Dead-letter topic",
            "Also publish every dead letter (JSON, with the reason and the original payload) to this topic, "
            "projects/P/topics/T.",
            TOPIC.pattern,
            type="PUBSUB_TOPIC",
        ),
        Parameter(
            "catalog",
            "Product catalogue changes",
            "revenue and all: the products change stream from CDC (pubsub://projects/P/subscriptions/S, "
            "kafka://HOST:PORT, or gs://BUCKET/DIR of cdc run's files); revenue by category then uses the "
            "database's categories.",
            _STREAM_INPUT,
        ),
        Parameter(
            "raw_events",
            "Keep raw events",
            "true: also write every valid, deduplicated event to clickstream_events and order_events (what "
            "the daily batch reads).",
            "^(true|false)$",
            type="BOOLEAN",
            default="false",
        ),
        _CONFIG,
    ),
)

CDC = Template(
    "cdc",
    "StreamForge CDC",
    "Debezium change events of the shop database -> per-table changelogs, current-state replicas, price changes, "
    "stock alerts and order status transitions in BigQuery; redeliveries dropped.",
    (
        Parameter(
            "input",
            "Change events",
            "pubsub://projects/P/subscriptions/NAME with {table} in NAME, one subscription per table topic "
            "(e.g. pubsub://projects/P/subscriptions/cdc-{table}; streaming), kafka://HOST:PORT (the "
            "Debezium topics, streaming through Beam's Kafka IO), or gs://BUCKET/DIR of cdc run's JSONL files "
            "(batch).",
            _either(PUBSUB_TABLES_INPUT.pattern, KAFKA_INPUT.pattern, GCS_PATH.pattern),
            optional=False,
        ),
        _WAREHOUSE,
        _CONFIG,
    ),
)

TEMPLATES = {template.name: template for template in (ANALYTICS, CDC)}


def metadata(template: Template) -> dict[str, Any]:
    """The template's ``metadata.json``: what the console's form shows and Dataflow validates."""
    return {
        "name": template.title,
        "description": template.description,
        "parameters": [p.metadata() for p in template.parameters],
    }


def spec(template: Template, image: str) -> dict[str, Any]:
    """The whole Flex Template spec file (what ``gcloud dataflow flex-template build`` writes):
    the launcher image, and the same image for the workers (``sdkContainerImage``), so a job
    launched from the template runs its code in the environment that built it."""
    return {
        "image": image,
        "sdkInfo": {"language": "PYTHON"},
        "metadata": metadata(template),
        "defaultEnvironment": {"sdkContainerImage": image},
    }
