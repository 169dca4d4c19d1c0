"""The Pulumi program run offline for tests: its artifacts built for real (template specs,
function and batch packages), the example stack's settings, Pulumi's mocks, no network."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batch.packaging import package as package_batch
from beam_pipelines.dataflow.templates import TEMPLATES, spec
from infra.offline import Recorded, is_secret, run_program
from infra.plan import stack_config
from streamforge.cdc.config import DebeziumServerConfig
from streamforge.config import load_config
from streamforge.functions.packaging import FUNCTIONS
from streamforge.functions.packaging import package as package_function
from streamforge.packaging import REPO_ROOT, build_wheel
from streamforge.topology import Topology, topology

__all__ = ["EXAMPLE_STACK", "IMAGE", "PROJECT", "SECRETS", "Deployment", "build_artifacts", "deploy_offline", "stack"]

EXAMPLE_STACK = REPO_ROOT / "Pulumi.example.yaml"
PROJECT = "my-shop-analytics"  # the example stack's
IMAGE = f"europe-west1-docker.pkg.dev/{PROJECT}/streamforge/streamforge@sha256:{'0' * 64}"
#: Secret values the tests set; none may appear in any resource outside a secret.
SECRETS = {
    "streamforge:cdcDatabasePassword": "db-password-7f3a9c1e5b",
    "streamforge:cdcPiiSalt": "5a17c0ffee5a17c0ffee5a17c0ffee00",
    "streamforge:ingestApiKeys": "server:ingest-key-0123456789abcdef,browser:ingest-key-fedcba9876543210",
    "streamforge:webhookSecrets": json.dumps(
        {"RISK_WEBHOOK_URL": "https://hooks.example.com/risk/t0k3n-42", "RISK_WEBHOOK_SECRET": "whsec-5e2d8a7c6b"}
    ),
}


def build_artifacts(root: Path) -> dict[str, Path]:
    """What `streamforge dataflow template|functions package|batch package` write, into ``root``."""
    templates = root / "templates"
    templates.mkdir(parents=True)
    for name, template in TEMPLATES.items():
        (templates / f"{name}.json").write_text(json.dumps(spec(template, IMAGE)), encoding="utf-8")
    wheel = build_wheel(root / "wheel")
    for name in FUNCTIONS:
        package_function(name, root / "functions", wheel)
    package_batch(root / "batch")
    return {"templatesDir": templates, "functionsDir": root / "functions", "batchDir": root / "batch"}


def stack(artifacts: dict[str, Path], **settings: Any) -> tuple[dict[str, str], list[str]]:
    """The example stack's config pointing at ``artifacts``, with the test secrets and
    ``settings`` (``streamforge:`` keys; None removes one)."""
    config, secret_keys = stack_config(EXAMPLE_STACK)
    config.update({f"streamforge:{key}": str(path) for key, path in artifacts.items()})
    config.update(SECRETS)
    for key, value in settings.items():
        name = key if ":" in key else f"streamforge:{key}"
        if value is None:
            config.pop(name, None)
        else:
            config[name] = value if isinstance(value, str) else json.dumps(value)
    return config, sorted(set(secret_keys) | set(SECRETS))


@dataclass
class Deployment:
    """Every resource the program registered (run as `pulumi up` runs it), and the Pub/Sub
    layout it deploys."""

    resources: list[Recorded]
    topology: Topology

    def of_type(self, token: str) -> list[Recorded]:
        """``token``: the end of the type token, e.g. ``pubsub/subscription:Subscription``."""
        return [r for r in self.resources if r.type.endswith(token)]

    def named(self, token: str, name: str) -> Recorded:
        (found,) = [r for r in self.of_type(token) if r.get("name") == name or r.name == name]
        return found

    def inputs_text(self, resource: Recorded) -> str:
        """A resource's inputs as text with every secret-wrapped value left out."""
        return json.dumps(_without_secrets(resource.inputs), default=str)


def deploy_offline(config: dict[str, str], secret_keys: list[str]) -> Deployment:
    """The program run from infra/ in a fresh interpreter as `pulumi up` runs it, under Pulumi's
    mocks (infra/offline.py; any network access fails it)."""
    resources = run_program(REPO_ROOT, config, secret_keys, stack="test")
    prefix = config.get("streamforge:prefix", "streamforge")
    return Deployment(resources, topology(load_config(), DebeziumServerConfig.load(), prefix))


def _without_secrets(value: Any) -> Any:
    if is_secret(value):
        return "<secret>"
    if isinstance(value, dict):
        return {k: _without_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_secrets(v) for v in value]
    return value
