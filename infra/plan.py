"""What ``pulumi up`` would create, rendered offline from a stack file (``streamforge infra plan``).

The stack file's config is read as Pulumi reads it (namespaced keys; objects and lists as
JSON). Secrets cannot be decrypted here, and the example stack has none: each missing one
gets a placeholder, marked secret, so the program runs; the plan never shows a value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from infra.offline import Recorded, run_program
from infra.settings import SettingsError, placeholder_secrets

__all__ = ["PlannedResource", "SECRET_KEYS", "find_project", "plan", "stack_config", "stack_name"]

#: The stack's secret settings (pulumi config set --secret ...).
SECRET_KEYS = (
    "streamforge:cdcDatabasePassword",
    "streamforge:cdcPiiSalt",
    "streamforge:ingestApiKeys",
    "streamforge:webhookSecrets",
)
_PLACEHOLDER = "offline-placeholder-not-a-secret"
_HEX_PLACEHOLDER = "0ff11e0ff11e0ff11e0ff11e0ff11e00"  # where the value must be hex (a salt)


@dataclass(frozen=True)
class PlannedResource:
    type: str  # e.g. pubsub.Subscription
    name: str  # the physical name where the program sets one, else the logical name
    parent: str  # the area (component) it belongs to
    settings: str  # the key settings, one line


def stack_config(path: Path) -> tuple[dict[str, str], list[str]]:
    """The config of a Pulumi stack file as the engine passes it, secrets filled with placeholders."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SettingsError(f"{path}: cannot read the stack file: {exc}") from None
    config: dict[str, str] = {}
    secrets: list[str] = []
    for key, value in (document.get("config") or {}).items():
        if isinstance(value, dict) and "secure" in value:
            secrets.append(key)  # encrypted for the stack: a placeholder offline
            continue
        config[key] = value if isinstance(value, str) else json.dumps(value)
    placeholders = {
        "streamforge:webhookSecrets": json.dumps(
            placeholder_secrets(json.loads(config.get("streamforge:webhooks", "[]")))
        ),
        "streamforge:cdcPiiSalt": _HEX_PLACEHOLDER,
    }
    for key in SECRET_KEYS:
        if key not in config:
            config[key] = placeholders.get(key, _PLACEHOLDER)
            secrets.append(key)
    return config, sorted(set(secrets))


def find_project(start: Path) -> Path:
    """The Pulumi project the way the Pulumi CLI finds it: the Pulumi.yaml in ``start`` or above."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / "Pulumi.yaml").is_file():
            return folder
    raise SettingsError(f"no Pulumi.yaml in {start} or above it: run this from the Pulumi project")


def stack_name(stack_file: Path) -> str:
    """``Pulumi.prod.yaml`` -> ``prod``."""
    return stack_file.name.removeprefix("Pulumi.").removesuffix(".yaml") or "offline"


def plan(stack_file: Path, project: Path | None = None) -> tuple[list[Recorded], list[PlannedResource]]:
    """The program of ``project`` (default: found from the current folder, as the Pulumi CLI
    does) run as ``pulumi up`` runs it (infra/offline.py) with the stack file's settings."""
    config, secrets = stack_config(stack_file)
    recorded = run_program(project or find_project(Path.cwd()), config, secrets, stack_name(stack_file))
    areas = {r.urn: r.name for r in recorded if not r.custom}
    planned = [
        PlannedResource(_short(r.type), _physical(r), areas.get(r.parent, "-"), _summary(r))
        for r in recorded
        if r.custom
    ]
    return recorded, planned


def _short(token: str) -> str:
    """``gcp:pubsub/subscription:Subscription`` -> ``pubsub.Subscription``."""
    _, module, kind = token.split(":")
    return f"{module.split('/')[0]}.{kind}"


def _physical(r: Recorded) -> str:
    for key in (
        "name",
        "accountId",
        "tableId",
        "datasetId",
        "secretId",
        "repositoryId",
        "displayName",
        "service",
        "field",
    ):
        value = r.get(key)
        if isinstance(value, str) and value:
            return value
    return r.name


def _summary(r: Recorded) -> str:
    kind = _short(r.type)
    if kind.endswith("IAMMember") or kind.endswith("IamMember"):
        target = next(
            (
                str(r.get(k))
                for k in (
                    "topic",
                    "subscription",
                    "datasetId",
                    "bucket",
                    "secretId",
                    "repository",
                    "serviceAccountId",
                    "name",
                    "project",
                )
                if r.get(k)
            ),
            "",
        )
        return f"{r.get('role')} -> {r.get('member')} on {target.rsplit('/', 1)[-1]}"
    if kind == "pubsub.Subscription":
        parts = [f"topic {str(r.get('topic')).rsplit('/', 1)[-1]}"]
        if r.get("pushConfig"):
            parts.append("push (OIDC)")
        dead = r.get("deadLetterPolicy")
        parts.append(
            f"dead letters -> {str(dead['deadLetterTopic']).rsplit('/', 1)[-1]} after "
            f"{int(dead['maxDeliveryAttempts'])}"
            if dead
            else "no dead-letter topic"
        )
        return ", ".join(parts)
    if kind == "bigquery.Table":
        if r.get("view"):
            return "view"
        partition = (r.get("timePartitioning") or {}).get("field")
        columns = len(json.loads(r.get("schema") or "[]"))
        return f"{columns} columns, partitioned by {partition}" + (
            f", clustered by {', '.join(r.get('clusterings'))}" if r.get("clusterings") else ""
        )
    if kind == "dataflow.FlexTemplateJob":
        return (
            f"{r.get('machineType')} x{int(r.get('maxWorkers'))}, Streaming Engine, on delete {r.get('onDelete')}, "
            f"parameters {', '.join(sorted(r.get('parameters') or {}))}"
        )
    if kind == "cloudfunctionsv2.Function":
        service = r.get("serviceConfig") or {}
        return f"entry {r.get('buildConfig', 'entryPoint')}, ingress {service.get('ingressSettings')}"
    if kind == "cloudrunv2.Service":
        containers = (r.get("template") or {}).get("containers") or []
        return "containers " + ", ".join(c.get("name", "?") for c in containers) + ", min 1 instance, CPU always on"
    if kind == "sql.DatabaseInstance":
        flags = ((r.get("settings") or {}).get("databaseFlags")) or []
        return f"{r.get('databaseVersion')}, " + ", ".join(f"{f['name']}={f['value']}" for f in flags)
    if kind == "monitoring.AlertPolicy":
        return str(((r.get("conditions") or [{}])[0]).get("displayName"))
    if kind == "storage.Bucket":
        return f"{len(r.get('lifecycleRules') or [])} lifecycle rule(s)"
    if kind == "secretmanager.SecretVersion":
        return "value write-only (in the state only encrypted, as a Pulumi secret)"
    if kind == "cloudscheduler.Job":
        return f"{r.get('schedule')} {r.get('timeZone')}"
    return ""
