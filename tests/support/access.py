"""Access from behaviour: what each workload's code really calls, as IAM permissions on
resources, and whether the plan's grants cover exactly that.

A workload's accesses come from running it (tests/support/access_site records the calls its
process makes against the emulators), from the job a Flex Template launch wrote (the reads and
writes Dataflow itself performs as the job's account), from the code Google runs on its behalf
(the workflow's source, the scheduler's target), or, for what Google's own services do as the
account and no code here can show, from Google's documentation (``PLATFORM``, each with why).
The translation tables below are Google's: which permission an API method needs, and which
permissions a predefined role holds (IAM's role reference) - never a list of our accesses.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import unquote

from infra.offline import Recorded

__all__ = ["Access", "Grant", "PLATFORM", "ROLE_PERMISSIONS", "check", "grants", "read_log"]


@dataclass(frozen=True)
class Access:
    workload: str
    permission: str
    resource: str  # projects/P/topics/T, buckets/B, projects/P/datasets/D, ...
    source: str  # how it was found: observed, the written job, the workflow's source, platform: why

    def __str__(self) -> str:
        return f"{self.workload}: {self.permission} on {self.resource} ({self.source})"


#: Permissions of the predefined roles the program grants (the subset that matters here).
ROLE_PERMISSIONS: dict[str, set[str]] = {
    "roles/pubsub.publisher": {"pubsub.topics.publish"},
    "roles/pubsub.subscriber": {"pubsub.subscriptions.consume", "pubsub.topics.attachSubscription"},
    "roles/pubsub.viewer": {"pubsub.subscriptions.get", "pubsub.topics.get"},
    "roles/bigquery.dataEditor": {
        "bigquery.datasets.get",
        "bigquery.tables.create",
        "bigquery.tables.get",
        "bigquery.tables.getData",
        "bigquery.tables.list",
        "bigquery.tables.update",
        "bigquery.tables.updateData",
    },
    "roles/bigquery.jobUser": {"bigquery.jobs.create"},
    "roles/bigquery.readSessionUser": {"bigquery.readsessions.create", "bigquery.readsessions.getData"},
    "roles/storage.objectAdmin": {
        "storage.objects.create",
        "storage.objects.delete",
        "storage.objects.get",
        "storage.objects.list",
    },
    "roles/storage.objectViewer": {"storage.objects.get", "storage.objects.list"},
    "roles/secretmanager.secretAccessor": {"secretmanager.versions.access"},
    "roles/datastore.user": {"datastore.entities.get", "datastore.entities.create", "datastore.entities.update"},
    "roles/artifactregistry.reader": {"artifactregistry.repositories.downloadArtifacts"},
    "roles/artifactregistry.writer": {
        "artifactregistry.repositories.downloadArtifacts",
        "artifactregistry.repositories.uploadArtifacts",
    },
    "roles/run.invoker": {"run.routes.invoke"},
    "roles/dataflow.worker": {"dataflow.workItems.lease"},
    "roles/dataproc.worker": {"dataproc.agents.create"},
    "roles/dataproc.editor": {"dataproc.batches.create", "dataproc.batches.get"},
    "roles/logging.logWriter": {"logging.logEntries.create"},
    "roles/cloudsql.client": {"cloudsql.instances.connect"},
    "roles/workflows.invoker": {"workflows.executions.create"},
    "roles/iam.serviceAccountUser": {"iam.serviceAccounts.actAs"},
}

#: What Google's services do as a workload's account, which no code here can show (Google's docs).
PLATFORM: dict[str, list[tuple[str, str, str]]] = {
    # (permission, resource pattern ({project}, {prefix} and {bucket:PURPOSE} filled in), why)
    "analytics": [
        ("dataflow.workItems.lease", "projects/{project}", "Dataflow runs the job's workers as its account"),
        ("storage.objects.get", "buckets/{bucket:templates}", "the Flex Template launch reads the spec"),
    ],
    "cdc-job": [
        ("dataflow.workItems.lease", "projects/{project}", "Dataflow runs the job's workers as its account"),
        ("storage.objects.get", "buckets/{bucket:templates}", "the Flex Template launch reads the spec"),
    ],
    "batch": [("dataproc.agents.create", "projects/{project}", "Dataproc Serverless runs the batch as its account")],
    "batch-flow": [("logging.logEntries.create", "projects/{project}", "the workflow's call logs")],
    "fn-build": [
        ("logging.logEntries.create", "projects/{project}", "Cloud Build writes the build's log"),
        ("storage.objects.get", "buckets/{bucket:functions}", "the build reads the function's source"),
        (
            "artifactregistry.repositories.uploadArtifacts",
            "repositories/{prefix}-functions",
            "the build pushes the function's image",
        ),
    ],
    "debezium": [
        (
            "cloudsql.instances.connect",
            "projects/{project}/instances/{prefix}-shop",
            "the Cloud SQL Auth Proxy sidecar connects as the service's account",
        )
    ],
}


@dataclass(frozen=True)
class Grant:
    workload: str
    role: str
    resource: str
    condition: str | None  # a CEL expression on resource.name
    kind: str  # the resource type that granted it

    def covers(self, access: Access) -> bool:
        if access.workload != self.workload or access.permission not in ROLE_PERMISSIONS.get(self.role, ()):
            return False
        if self.resource.startswith("projects/") and self.resource.count("/") == 1:  # project-wide
            if not access.resource.startswith(self.resource) and not access.resource.startswith(
                ("buckets/", "repositories/", "services/", "serviceAccounts/")
            ):
                return False
            return self.condition is None or _condition_holds(self.condition, access.resource)
        return access.resource == self.resource

    def __str__(self) -> str:
        where = f" if {self.condition}" if self.condition else ""
        return f"{self.workload}: {self.role} on {self.resource}{where} ({self.kind})"


def _condition_holds(expression: str, name: str) -> bool:
    """The CEL conditions the program writes: resource.name startsWith / endsWith / == a literal."""
    match = re.fullmatch(r'resource\.name\.(startsWith|endsWith)\("([^"]*)"\)|resource\.name == "([^"]*)"', expression)
    if match is None:
        raise ValueError(f"an IAM condition this check cannot read: {expression}")
    if match.group(3) is not None:
        return name == match.group(3)
    return name.startswith(match.group(2)) if match.group(1) == "startsWith" else name.endswith(match.group(2))


def _workload(member: str, project: str, prefix: str) -> str | None:
    match = re.fullmatch(rf"serviceAccount:{prefix}-([a-z-]+)@{project}\.iam\.gserviceaccount\.com", member or "")
    return match.group(1) if match else None


def grants(resources: list[Recorded], project: str, prefix: str) -> list[Grant]:
    """Every IAM grant of the plan to a workload's account, with the resource it is on."""
    found = []
    for r in resources:
        role, member = r.get("role"), r.get("member")
        workload = _workload(member, project, prefix) if role else None
        if workload is None:
            continue
        kind = r.type.split(":")[-1]
        if kind == "TopicIAMMember":
            resource = f"projects/{project}/topics/{r.get('topic')}"
        elif kind == "SubscriptionIAMMember":
            resource = f"projects/{project}/subscriptions/{r.get('subscription')}"
        elif kind == "DatasetIamMember":
            resource = f"projects/{project}/datasets/{r.get('datasetId')}"
        elif kind == "BucketIAMMember":
            resource = f"buckets/{r.get('bucket')}"
        elif kind == "SecretIamMember":
            resource = f"projects/{project}/secrets/{r.get('secretId')}"
        elif kind == "RepositoryIamMember":
            resource = f"repositories/{r.get('repository')}"
        elif kind == "ServiceIamMember":
            resource = f"services/{r.get('name')}"
        elif kind == "IAMMember" and r.type.startswith("gcp:serviceaccount"):
            resource = f"serviceAccounts/{r.get('serviceAccountId')}"
        elif kind == "IAMMember":
            resource = f"projects/{project}"
        else:
            raise ValueError(f"a grant of a kind this check does not know: {r.type}")
        condition = (r.get("condition") or {}).get("expression")
        found.append(Grant(workload, role, resource, condition, kind))
    return found


# -- what recorded calls need ------------------------------------------------------------------

_GRPC: dict[str, tuple[str, str] | None] = {
    # the local tools create missing topics only against an emulator (streamforge/transport.py)
    "/google.pubsub.v1.Publisher/CreateTopic": None,
    "/google.pubsub.v1.Publisher/Publish": ("pubsub.topics.publish", "topic"),
    "/google.pubsub.v1.Publisher/GetTopic": ("pubsub.topics.get", "topic"),
    "/google.pubsub.v1.Subscriber/Pull": ("pubsub.subscriptions.consume", "subscription"),
    "/google.pubsub.v1.Subscriber/StreamingPull": ("pubsub.subscriptions.consume", "subscription"),
    "/google.pubsub.v1.Subscriber/Acknowledge": ("pubsub.subscriptions.consume", "subscription"),
    "/google.pubsub.v1.Subscriber/ModifyAckDeadline": ("pubsub.subscriptions.consume", "subscription"),
    "/google.pubsub.v1.Subscriber/GetSubscription": ("pubsub.subscriptions.get", "subscription"),
    "/google.firestore.v1.Firestore/GetDocument": ("datastore.entities.get", "name"),
    "/google.firestore.v1.Firestore/BatchGetDocuments": ("datastore.entities.get", "database"),
    "/google.firestore.v1.Firestore/Commit": ("datastore.entities.update", "database"),
}
_GCS_OBJECT = re.compile(r"/(?:upload/|download/)?storage/v1/b/([^/]+)/o(?:/(.+))?$")
_BIGQUERY = re.compile(
    r"/bigquery/v2/projects/([^/]+)(?:/datasets/([^/]+)(?:/tables(?:/([^/]+))?(/insertAll|/data)?)?|/(jobs|queries)(?:/.*)?)?$"
)
_DDL = re.compile(r"CREATE\s+(?:OR\s+REPLACE\s+)?(?:VIEW|TABLE)\s+`?([\w-]+)\.(\w+)\.(\w+)`?", re.IGNORECASE)


def _database(name: str) -> str:
    return "/".join(name.split("/")[:4])  # projects/P/databases/D[/documents/...]


def translate(entry: dict[str, Any]) -> list[tuple[str, str]]:
    """The (permission, resource) pairs one recorded call needs; [] for what is not a Google API."""
    if entry["kind"] == "grpc":
        if not entry["method"].startswith("/google."):
            return []  # the local runner's own services (Beam's test stream), not Google's
        if entry["method"] not in _GRPC:
            raise ValueError(f"a gRPC method the translation does not know: {entry['method']}")
        known = _GRPC[entry["method"]]
        if known is None:
            return []
        permission, field = known
        resource = entry.get(field, "")
        if permission.startswith("datastore."):
            resource = _database(resource)
            if permission == "datastore.entities.update":
                return [("datastore.entities.create", resource), (permission, resource)]
        return [(permission, resource)]
    if entry["kind"] != "http":
        return []
    path = "/" + entry["url"].split("://", 1)[-1].split("/", 1)[-1]
    method = entry["method"]
    gcs = _GCS_OBJECT.search(path)
    if gcs:
        bucket, name = gcs.group(1), gcs.group(2)
        if method in ("POST", "PUT") and ("/upload/" in path or "/copyTo/" in path or "/rewriteTo/" in path):
            return [("storage.objects.create", f"buckets/{unquote(bucket)}")]
        if method == "DELETE":
            return [("storage.objects.delete", f"buckets/{unquote(bucket)}")]
        if method == "GET" and name is None:
            return [("storage.objects.list", f"buckets/{unquote(bucket)}")]
        return [("storage.objects.get", f"buckets/{unquote(bucket)}")]
    bigquery = _BIGQUERY.search(path)
    if bigquery:
        project, dataset, table, data, jobs = bigquery.groups()
        if jobs:
            if method == "POST" and jobs == "jobs":
                needs = [("bigquery.jobs.create", f"projects/{project}")]
                for target in _DDL.findall(entry.get("query") or ""):
                    needs += [
                        ("bigquery.tables.create", f"projects/{target[0]}/datasets/{target[1]}"),
                        ("bigquery.tables.update", f"projects/{target[0]}/datasets/{target[1]}"),
                    ]
                return needs
            return []  # a job's own status and results: its creator may read them
        where = f"projects/{project}/datasets/{dataset}"
        if table is None:
            return [("bigquery.tables.create" if method == "POST" else "bigquery.datasets.get", where)]
        if data == "/insertAll":
            return [("bigquery.tables.updateData", where)]
        return [("bigquery.tables.get" if method == "GET" else "bigquery.tables.update", where)]
    return []


def read_log(path: Path, secrets: dict[str, str]) -> set[Access]:
    """The accesses a recorded process log shows. ``secrets`` maps each environment variable a
    deployment fills from Secret Manager to its secret (projects/P/secrets/S): reading the
    variable is reading the secret."""
    found: set[Access] = set()
    if not path.exists():
        return found
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        if entry["kind"] == "env":
            if entry["name"] in secrets:
                found.add(
                    Access(entry["workload"], "secretmanager.versions.access", secrets[entry["name"]], "observed")
                )
            continue
        for permission, resource in translate(entry):
            found.add(Access(entry["workload"], permission, resource, "observed"))
    return found


def check(accesses: Iterable[Access], plan_grants: list[Grant]) -> tuple[list[Access], list[Grant]]:
    """(accesses no grant covers, grants no access uses)."""
    accesses = set(accesses)
    missing = sorted((a for a in accesses if not any(g.covers(a) for g in plan_grants)), key=str)
    unused = sorted((g for g in plan_grants if not any(g.covers(a) for a in accesses)), key=str)
    return missing, unused
