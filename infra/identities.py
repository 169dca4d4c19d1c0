"""One service account per workload, and the few roles that have no narrower scope than the project.

Every other role is granted on the resource it is about, by the area that creates it (the
subscription, the topic, the dataset, the bucket, the secret). What remains here is what the
APIs only offer per project, each with the reason; a condition narrows it where IAM allows.
No basic roles, no admin roles (tests/infra hold both).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from infra.component import Area, member
from infra.settings import SHOP_INSTANCE, Settings

__all__ = ["WORKLOADS", "Identities", "ProjectRole"]

#: workload -> what runs as it. Every account is used by exactly this workload.
WORKLOADS = {
    "analytics": "Dataflow workers (and launcher) of the streaming analytics job",
    "cdc-job": "Dataflow workers (and launcher) of the CDC job",
    "dispatcher": "the alert dispatcher function",
    "alert-push": "the identity of the push subscription's requests to the alert dispatcher",
    "ingest": "the event ingest function",
    "fn-build": "Cloud Build, building the functions' containers",
    "debezium": "Debezium Server on Cloud Run",
    "batch": "the daily PySpark batch on Dataproc Serverless",
    "batch-flow": "the workflow that starts the daily batch and waits for it",
    "scheduler": "Cloud Scheduler, starting the batch workflow",
}
_CDC_WORKLOADS = ("cdc-job", "debezium")


@dataclass(frozen=True)
class ProjectRole:
    workload: str
    role: str
    why: str
    condition: tuple[str, str] | None = None  # (title, CEL expression)


def project_roles(settings: Settings) -> tuple[ProjectRole, ...]:
    firestore = f"projects/{settings.project}/databases/{settings.ledger_database}"
    roles = [
        ProjectRole("analytics", "roles/dataflow.worker", "Dataflow workers need it; it has no narrower scope"),
        ProjectRole(
            "dispatcher",
            "roles/datastore.user",
            "Firestore grants per project: limited to the ledger's database",
            ("ledger database only", f'resource.name.startsWith("{firestore}")'),
        ),
        ProjectRole("fn-build", "roles/logging.logWriter", "build logs"),
        ProjectRole("batch", "roles/dataproc.worker", "Dataproc Serverless runs the batch as it"),
        ProjectRole("batch", "roles/bigquery.jobUser", "the connector's load and query jobs run in the project"),
        ProjectRole("batch", "roles/bigquery.readSessionUser", "the connector reads through the Storage Read API"),
        ProjectRole("batch-flow", "roles/dataproc.editor", "creating a Dataproc batch has no narrower scope"),
        ProjectRole("batch-flow", "roles/logging.logWriter", "the workflow's call logs"),
        ProjectRole(
            "scheduler",
            "roles/workflows.invoker",
            "starting executions of the batch workflow: Workflows grants per project only, and IAM "
            "conditions cannot name a workflow (Workflows does not support resource attributes)",
        ),
    ]
    if settings.cdc.enabled:
        roles += [
            ProjectRole("cdc-job", "roles/dataflow.worker", "Dataflow workers need it; it has no narrower scope"),
            ProjectRole(
                "debezium",
                "roles/cloudsql.client",
                "the Cloud SQL Auth Proxy connects as it",
                (
                    "shop database instance only",
                    f'resource.name == "projects/{settings.project}/instances/{settings.prefix}-{SHOP_INSTANCE}"',
                ),
            ),
        ]
    return tuple(roles)


class Identities(Area):
    def __init__(self, settings: Settings, opts: pulumi.ResourceOptions | None = None):
        super().__init__("Identities", "identities", opts)
        self.accounts: dict[str, gcp.serviceaccount.Account] = {}
        for workload, purpose in WORKLOADS.items():
            if workload in _CDC_WORKLOADS and not settings.cdc.enabled:
                continue
            self.accounts[workload] = gcp.serviceaccount.Account(
                f"sa-{workload}",
                project=settings.project,
                account_id=f"{settings.prefix}-{workload}",
                display_name=f"StreamForge {workload}",
                description=purpose,
                opts=self.child,
            )
        self.project_roles = [
            gcp.projects.IAMMember(
                f"{grant.workload}-{grant.role.split('/')[1].replace('.', '-').lower()}",
                project=settings.project,
                role=grant.role,
                member=self.member(grant.workload),
                condition={"title": grant.condition[0], "expression": grant.condition[1], "description": grant.why}
                if grant.condition
                else None,
                opts=self.child,
            )
            for grant in project_roles(settings)
        ]
        self.register_outputs({"emails": {w: a.email for w, a in self.accounts.items()}})

    def email(self, workload: str) -> pulumi.Output[str]:
        return self.accounts[workload].email

    def member(self, workload: str) -> pulumi.Output[str]:
        return member(self.accounts[workload].email)
