"""The daily PySpark batch: a workflow that runs it on Dataproc Serverless, started by Cloud Scheduler.

Cloud Scheduler starts the workflow every day (``batchSchedule``, ``batchTimeZone``); the
workflow creates the Dataproc batch for yesterday (UTC) with the packaged job
(``streamforge batch package``: its manifest names the files, the runtime and the arguments)
and waits for it. A failed batch, and a reconciliation MISMATCH (the job exits 3, which
fails the batch), fail the execution; an alert policy watches failed executions
(observability.py). Run a day again with ``gcloud workflows run ... --data='{"date":
"YYYY-MM-DD"}'``.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pulumi
import pulumi_gcp as gcp

from infra.artifacts import BatchPackage
from infra.component import Area
from infra.identities import Identities
from infra.settings import DAILY_BATCH_WORKFLOW, Settings
from infra.storage import Storage
from infra.warehouse import Warehouse
from streamforge.naming import JOB_LABEL

__all__ = ["DailyBatch", "workflow_source"]

_WAIT_SECONDS = 4 * 3600


def workflow_source(
    settings: Settings, package: BatchPackage, files: list[str], bucket: str, warehouse: str, service_account: str
) -> str:
    """The workflow (its JSON form) that runs the batch for ``date`` (default: yesterday, UTC)."""
    main, *python_files = files
    fill = {"{warehouse}": warehouse, "{bucket}": bucket, "{date}": "${day}"}
    args = [fill.get(arg, arg) for arg in package.manifest["args"]]
    body: dict[str, Any] = {
        "pysparkBatch": {"mainPythonFileUri": main, "pythonFileUris": python_files, "args": args},
        "runtimeConfig": {"version": package.manifest["runtime_version"]},
        "environmentConfig": {"executionConfig": {"serviceAccount": service_account}},
        "labels": {**settings.labels, JOB_LABEL: "daily-batch"},
    }
    if settings.dataflow.subnetwork:
        body["environmentConfig"]["executionConfig"]["subnetworkUri"] = settings.dataflow.subnetwork
    steps = [
        {
            "init": {
                "assign": [
                    {"day": '${default(map.get(args, "date"), text.substring(time.format(sys.now() - 86400), 0, 10))}'},
                    {"batch_id": '${"daily-" + text.replace_all(day, "-", "") + "-" + string(int(sys.now()))}'},
                ]
            }
        },
        {
            "run_batch": {
                "call": "googleapis.dataproc.v1.projects.locations.batches.create",
                "args": {
                    "parent": f"projects/{settings.project}/locations/{settings.region}",
                    "batchId": "${batch_id}",
                    "body": body,
                    "connector_params": {"timeout": _WAIT_SECONDS},
                },
                "result": "batch",
            }
        },
        {"done": {"return": {"date": "${day}", "batch": "${batch_id}", "state": "${batch.state}"}}},
    ]
    return json.dumps({"main": {"params": ["args"], "steps": steps}}, indent=2)


class DailyBatch(Area):
    def __init__(
        self,
        settings: Settings,
        package: BatchPackage,
        identities: Identities,
        storage: Storage,
        warehouse: Warehouse,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("DailyBatch", "daily-batch", opts)
        name = f"{settings.prefix}-{DAILY_BATCH_WORKFLOW}"
        files = pulumi.Output.all(*[storage.gs_path(obj) for obj in storage.batch_files])
        source = pulumi.Output.all(files, storage.batch.name, identities.email("batch")).apply(
            lambda values: workflow_source(settings, package, list(values[0]), values[1], warehouse.url, values[2])
        )
        # the workflow creates batches that run as the batch account: it must be allowed to act as it
        act_as = gcp.serviceaccount.IAMMember(
            "batch-flow-acts-as-batch",
            service_account_id=identities.accounts["batch"].name,
            role="roles/iam.serviceAccountUser",
            member=identities.member("batch-flow"),
            opts=self.child,
        )
        self.workflow = gcp.workflows.Workflow(
            "daily-batch",
            project=settings.project,
            region=settings.region,
            name=name,
            description="Runs the StreamForge daily batch on Dataproc Serverless and waits for it",
            service_account=identities.email("batch-flow"),
            source_contents=source,
            call_log_level="LOG_ERRORS_ONLY",
            labels=settings.labels,
            deletion_protection=False,
            opts=self.after(act_as),
        )
        self.schedule = gcp.cloudscheduler.Job(
            "daily-batch-schedule",
            project=settings.project,
            region=settings.region,
            name=name,
            description="Starts the StreamForge daily batch workflow",
            schedule=settings.batch_schedule,
            time_zone=settings.batch_time_zone,
            attempt_deadline="180s",
            http_target={
                "http_method": "POST",
                "uri": f"https://workflowexecutions.googleapis.com/v1/projects/{settings.project}/locations/"
                f"{settings.region}/workflows/{name}/executions",
                "body": base64.b64encode(b'{"argument": "{}"}').decode(),
                "headers": {"Content-Type": "application/json"},
                "oauth_token": {
                    "service_account_email": identities.email("scheduler"),
                    "scope": "https://www.googleapis.com/auth/cloud-platform",
                },
            },
            opts=self.after(self.workflow),
        )
        self.name = name
        self.register_outputs({"workflow": name})
