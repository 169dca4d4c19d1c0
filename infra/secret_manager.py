"""Secret Manager secrets whose values come from Pulumi secrets.

The value is written as a write-only attribute (``secret_data_wo``): Google never returns it
and the provider never reads it back. Pulumi's state still holds it among the resource's
inputs, encrypted as a Pulumi secret (the bridged provider writes write-only fields there:
pulumi-terraform-bridge#3201). Pulumi cannot see a changed value, so
``streamforge:secretsVersion`` (an integer) is raised to push new values.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from infra.identities import Identities
from infra.settings import Settings

__all__ = ["ManagedSecret", "managed_secret"]


@dataclass(frozen=True)
class ManagedSecret:
    secret: gcp.secretmanager.Secret
    version: gcp.secretmanager.SecretVersion  # what a reader waits for: the secret has a value

    @property
    def secret_id(self) -> pulumi.Output[str]:
        return self.secret.secret_id


def managed_secret(
    settings: Settings,
    name: str,
    value: pulumi.Input[str],
    readers: list[str],
    identities: Identities,
    parent: pulumi.Resource,
) -> ManagedSecret:
    """Secret ``<prefix>-<name>`` holding ``value``; each workload in ``readers`` may read it, nobody else."""
    child = pulumi.ResourceOptions(parent=parent)
    secret = gcp.secretmanager.Secret(
        f"secret-{name}",
        project=settings.project,
        secret_id=f"{settings.prefix}-{name}",
        replication={"auto": {}},
        labels=settings.labels,
        opts=child,
    )
    version = gcp.secretmanager.SecretVersion(
        f"secret-{name}-value",
        secret=secret.id,
        secret_data_wo=pulumi.Output.secret(value),
        secret_data_wo_version=settings.secrets_version,
        opts=child,
    )
    for workload in readers:
        gcp.secretmanager.SecretIamMember(
            f"secret-{name}-{workload}",
            project=settings.project,
            secret_id=secret.secret_id,
            role="roles/secretmanager.secretAccessor",
            member=identities.member(workload),
            opts=child,
        )
    return ManagedSecret(secret, version)
