"""The Google APIs the deployment uses, enabled from the program so a new project works."""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from infra.component import Area
from infra.settings import Settings

__all__ = ["SERVICES", "ProjectApis"]

SERVICES = (
    "artifactregistry.googleapis.com",  # the Dataflow image, the Debezium image's remote repository
    "bigquery.googleapis.com",
    "bigquerystorage.googleapis.com",  # the batch reads through the Storage Read API
    "cloudbuild.googleapis.com",  # Cloud Functions build their containers with it
    "cloudfunctions.googleapis.com",
    "cloudresourcemanager.googleapis.com",  # project-level IAM bindings (the provider sets them through it)
    "cloudscheduler.googleapis.com",
    "compute.googleapis.com",  # Dataflow workers
    "dataflow.googleapis.com",
    "dataproc.googleapis.com",
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",  # Cloud Functions (2nd gen) and Debezium Server
    "secretmanager.googleapis.com",
    "sqladmin.googleapis.com",
    "storage.googleapis.com",
    "workflows.googleapis.com",
)


class ProjectApis(Area):
    def __init__(self, settings: Settings, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ProjectApis", "apis", opts)
        # disable_on_destroy=False: `pulumi destroy` must not switch off APIs other things use.
        self.services = [
            gcp.projects.Service(
                f"api-{name.split('.')[0]}",
                project=settings.project,
                service=name,
                disable_on_destroy=False,
                opts=self.child,
            )
            for name in SERVICES
        ]
        self.register_outputs({"services": list(SERVICES)})
