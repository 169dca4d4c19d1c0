"""The stack's configuration, read once into a typed object (``Settings.load``).

Every key is documented in ``Pulumi.example.yaml``; a wrong value fails ``pulumi preview``
with the key and the reason. Secrets (the CDC database password, the ingest API keys, the
webhooks' signing secrets and URLs) are read as Pulumi secrets and reach Secret Manager as
write-only values; in Pulumi's state they are inputs, encrypted like every Pulumi secret
(docs/infra.md, "Secrets").
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config

from streamforge.cdc.config import DEBEZIUM_SERVER_IMAGE
from streamforge.config import Config, load_config
from streamforge.functions.webhooks import WebhookConfigError, parse_webhooks
from streamforge.naming import DATASET, PREFIX, PROJECT_ID

__all__ = [
    "DAILY_BATCH_WORKFLOW",
    "KEYS",
    "LEDGER_DATABASE",
    "SHOP_INSTANCE",
    "AlertThresholds",
    "CdcSettings",
    "DataflowSettings",
    "Settings",
    "SettingsError",
    "placeholder_secrets",
    "project_root",
]

#: Names (after the prefix) that two areas refer to: the IAM condition and the resource itself.
SHOP_INSTANCE = "shop"
DAILY_BATCH_WORKFLOW = "daily-batch"
LEDGER_DATABASE = "ledger"  # a Firestore database id has 4-63 characters: never the prefix alone

_PREFIX = re.compile(r"^[a-z][a-z0-9-]{1,10}[a-z0-9]$")  # service account ids are at most 30 characters
_DATASET = re.compile(r"^\w{1,1024}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_LABEL = re.compile(r"^[a-z][-_a-z0-9]{0,62}$")
_CRON = re.compile(r"^(\S+\s+){4}\S+$")
_DOMAIN = re.compile(r"^(?=.{4,253}$)([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


#: Every ``streamforge:`` key the program reads (docs/infra.md's configuration reference lists
#: each one); any other key in the stack is refused, so a misspelt key is not silently ignored.
KEYS = (
    "prefix",
    "dataset",
    "location",
    "deployJobs",
    "protectData",
    "templatesDir",
    "functionsDir",
    "batchDir",
    "labels",
    "dataflow",
    "webhooks",
    "webhookSecrets",
    "ingestApiKeys",
    "ingestPublic",
    "ingestEdge",
    "cdc",
    "cdcDatabasePassword",
    "cdcPiiSalt",
    "batchSchedule",
    "batchTimeZone",
    "notificationEmails",
    "alerts",
    "messageRetention",
    "secretsVersion",
)
NAMESPACE = "streamforge"


class SettingsError(ValueError):
    """A stack setting is missing or invalid; the message names the key."""


@dataclass(frozen=True)
class DataflowSettings:
    machine_type: str = "n2-standard-2"
    max_workers: int = 3
    private_ips: bool = False  # workers without external IPs (needs Private Google Access on the subnetwork)
    subnetwork: str | None = None  # regions/REGION/subnetworks/NAME; default: the default network


@dataclass(frozen=True)
class CdcSettings:
    enabled: bool = True
    tier: str = "db-custom-1-3840"
    database_version: str = "POSTGRES_16"
    database: str = "shop"
    user: str = "debezium"
    debezium_image: str = DEBEZIUM_SERVER_IMAGE  # pulled through an Artifact Registry remote repository


@dataclass(frozen=True)
class IngestEdgeSettings:
    domain: str = ""  # set: an HTTPS load balancer with Cloud Armor in front of ingest (infra/edge.py)
    requests_per_minute_per_key: int = 600
    requests_per_minute_per_ip: int = 120


@dataclass(frozen=True)
class AlertThresholds:
    system_lag_seconds: int = 300
    data_freshness_seconds: int = 600
    oldest_unacked_seconds: int = 600
    cdc_oldest_unacked_seconds: int = 120
    dead_letters_per_minute: int = 10


@dataclass(frozen=True)
class Settings:
    project: str
    region: str
    prefix: str = PREFIX
    dataset: str = DATASET
    location: str = "US"  # BigQuery dataset and Firestore location
    deploy_jobs: bool = True
    protect_data: bool = True  # deletion protection on the Cloud SQL instance and the BigQuery tables
    templates_dir: Path = Path("dist/dataflow/templates")
    functions_dir: Path = Path("dist/functions")
    batch_dir: Path = Path("dist/batch")
    dataflow: DataflowSettings = field(default_factory=DataflowSettings)
    cdc: CdcSettings = field(default_factory=CdcSettings)
    alerts: AlertThresholds = field(default_factory=AlertThresholds)
    labels: dict[str, str] = field(default_factory=dict)
    webhooks: tuple[dict[str, Any], ...] = ()  # STREAMFORGE_WEBHOOKS
    notification_emails: tuple[str, ...] = ()
    batch_schedule: str = "30 2 * * *"
    batch_time_zone: str = "Etc/UTC"
    ingest_public: bool = True
    ingest_edge: IngestEdgeSettings = field(default_factory=IngestEdgeSettings)
    message_retention: str = "604800s"
    secrets_version: int = 1  # raise to push new secret values (write-only: Pulumi cannot see a change)
    streamforge: Config = field(default_factory=load_config)
    # secrets: Pulumi outputs, never plain values
    database_password: pulumi.Output[str] | None = None
    pii_salt: pulumi.Output[str] | None = None  # the salt of the hashed personal columns (infra/cdc.py)
    ingest_api_keys: pulumi.Output[str] | None = None
    webhook_secrets: pulumi.Output[dict[str, str]] | None = None

    @property
    def ledger_database(self) -> str:
        """The Firestore database of the dispatcher's delivery ledger."""
        return f"{self.prefix}-{LEDGER_DATABASE}"

    @property
    def secret_variables(self) -> tuple[str, ...]:
        """The environment variables the webhooks read their secrets and secret URLs from."""
        return tuple(placeholder_secrets(self.webhooks))

    @classmethod
    def load(cls, config: pulumi.Config | None = None, gcp: pulumi.Config | None = None) -> Settings:
        config = config or pulumi.Config(NAMESPACE)
        gcp = gcp or pulumi.Config("gcp")
        unknown = sorted(
            key.split(":", 1)[1]
            for key in set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env())
            if key.startswith(f"{NAMESPACE}:") and key.split(":", 1)[1] not in KEYS
        )
        if unknown:
            close = difflib.get_close_matches(unknown[0], KEYS, n=1)
            raise SettingsError(
                f"{NAMESPACE}:{unknown[0]}: unknown setting" + (f" (did you mean {close[0]}?)" if close else "")
            )
        project, region = gcp.require("project"), gcp.require("region")
        if not PROJECT_ID.match(project):
            raise SettingsError(f"gcp:project {project!r}: not a Google Cloud project id (6-30 of a-z 0-9 -)")
        prefix = config.get("prefix") or PREFIX
        if not _PREFIX.match(prefix):
            raise SettingsError(f"streamforge:prefix {prefix!r}: 3-12 of a-z 0-9 - (service account ids are short)")
        dataset = config.get("dataset") or DATASET
        if not _DATASET.match(dataset):
            raise SettingsError(f"streamforge:dataset {dataset!r}: letters, digits and underscores only")
        labels = config.get_object("labels") or {}
        for key, value in labels.items():
            if not _LABEL.match(key) or not re.match(r"^[-_a-z0-9]{0,63}$", str(value)):
                raise SettingsError(f"streamforge:labels {key}={value!r}: lower-case letters, digits, - and _")
        webhooks = tuple(config.get_object("webhooks") or ())
        _check_webhooks(webhooks)
        emails = tuple(config.get_object("notificationEmails") or ())
        for email in emails:
            if not _EMAIL.match(email):
                raise SettingsError(f"streamforge:notificationEmails: {email!r} is not an email address")
        schedule = config.get("batchSchedule") or cls.batch_schedule
        if not _CRON.match(schedule):
            raise SettingsError(f"streamforge:batchSchedule {schedule!r}: a cron expression of five fields")
        cdc = _section(config, "cdc", CdcSettings)
        root = project_root()
        settings = cls(
            project=project,
            region=region,
            prefix=prefix,
            dataset=dataset,
            location=config.get("location") or "US",
            deploy_jobs=_flag(config, "deployJobs"),
            protect_data=_flag(config, "protectData"),
            templates_dir=root / (config.get("templatesDir") or cls.templates_dir),
            functions_dir=root / (config.get("functionsDir") or cls.functions_dir),
            batch_dir=root / (config.get("batchDir") or cls.batch_dir),
            dataflow=_section(config, "dataflow", DataflowSettings),
            cdc=cdc,
            alerts=_section(config, "alerts", AlertThresholds),
            labels={"app": "streamforge", **{k: str(v) for k, v in labels.items()}},
            webhooks=webhooks,
            notification_emails=emails,
            batch_schedule=schedule,
            batch_time_zone=config.get("batchTimeZone") or cls.batch_time_zone,
            ingest_public=_flag(config, "ingestPublic"),
            ingest_edge=_section(config, "ingestEdge", IngestEdgeSettings),
            message_retention=config.get("messageRetention") or cls.message_retention,
            secrets_version=config.get_int("secretsVersion") or 1,
            database_password=config.require_secret("cdcDatabasePassword") if cdc.enabled else None,
            pii_salt=config.require_secret("cdcPiiSalt") if cdc.enabled else None,
            ingest_api_keys=config.require_secret("ingestApiKeys"),
            webhook_secrets=config.get_secret_object("webhookSecrets") or pulumi.Output.secret({}),
        )
        if settings.dataflow.max_workers < 1:
            raise SettingsError("streamforge:dataflow.maxWorkers must be at least 1")
        edge = settings.ingest_edge
        if edge.domain and not _DOMAIN.match(edge.domain):
            raise SettingsError(f"streamforge:ingestEdge.domain {edge.domain!r}: a DNS name such as events.example.com")
        if min(edge.requests_per_minute_per_key, edge.requests_per_minute_per_ip) < 1:
            raise SettingsError("streamforge:ingestEdge: the requests per minute must be at least 1")
        return settings


def project_root() -> Path:
    """The folder of Pulumi.yaml: the stack's relative paths (``templatesDir``, ...) are relative
    to it. Pulumi runs the program from inside its ``main:`` folder (infra/), not from there."""
    try:
        root = pulumi.get_root_directory()  # set by the Pulumi CLI's language host
    except AttributeError:  # not by the mock engine
        root = None
    if isinstance(root, str) and (Path(root) / "Pulumi.yaml").is_file():
        return Path(root)
    here = Path.cwd()
    for folder in (here, *here.parents):
        if (folder / "Pulumi.yaml").is_file():
            return folder
    raise SettingsError(f"no Pulumi.yaml in {here} or above it: run the program from its Pulumi project")


def _flag(config: pulumi.Config, key: str, default: bool = True) -> bool:
    value = config.get(key)
    if value is None:
        return default
    if value not in ("true", "false"):
        raise SettingsError(f"streamforge:{key} must be true or false, got {value!r}")
    return value == "true"


def _section(config: pulumi.Config, key: str, kind: type) -> Any:
    """A settings object from a config object whose keys are the fields in camelCase."""
    raw = config.get_object(key) or {}
    if not isinstance(raw, dict):
        raise SettingsError(f"streamforge:{key} must be an object, got {raw!r}")
    fields = {_camel(name): name for name in kind.__dataclass_fields__}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise SettingsError(f"streamforge:{key}.{unknown[0]}: unknown setting; known: {', '.join(sorted(fields))}")
    values = {}
    for camel, name in fields.items():
        if camel not in raw:
            continue
        default = getattr(kind(), name)
        value = raw[camel]
        expected = type(default) if default is not None else str
        if expected is int and isinstance(value, str) and value.isdigit():
            value = int(value)
        if expected is bool and isinstance(value, str) and value in ("true", "false"):
            value = value == "true"
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise SettingsError(f"streamforge:{key}.{camel} must be {expected.__name__}, got {value!r}")
        values[name] = value
    return kind(**values)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def placeholder_secrets(webhooks: Any) -> dict[str, str]:
    """Each environment variable the webhooks read a secret URL or signing secret from, with a
    value that passes the dispatcher's checks: to validate the webhooks, or plan, without the secrets."""
    return {
        hook[key]: "https://placeholder.invalid/hook" if key == "url_env" else "placeholder-secret-0123456789"
        for hook in webhooks
        if isinstance(hook, dict)
        for key in ("url_env", "secret_env")
        if key in hook
    }


def _check_webhooks(webhooks: tuple[Any, ...]) -> None:
    """The webhooks must parse as the dispatcher parses them (placeholders for the secrets)."""
    try:
        parse_webhooks({"STREAMFORGE_WEBHOOKS": json.dumps(list(webhooks)), **placeholder_secrets(webhooks)})
    except WebhookConfigError as exc:
        raise SettingsError(f"streamforge:webhooks: {exc}") from None
