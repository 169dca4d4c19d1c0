"""Cloud Storage and Artifact Registry: buckets with lifecycle rules, the image repositories,
and the uploads of what the CLI built (template specs, function sources, the batch's code).

Images are not built here (no Docker plugin): the Dataflow image is pushed by Cloud Build
(``gcloud builds submit dist/dataflow``) and referenced by digest from the template specs;
Debezium Server's image is pulled through a remote repository (Cloud Run cannot pull from
quay.io directly).
"""

from __future__ import annotations

from pathlib import Path

import pulumi
import pulumi_gcp as gcp

from infra.artifacts import BatchPackage, FlexTemplate, content_name, function_archive
from infra.component import Area
from infra.identities import Identities
from infra.settings import Settings

__all__ = ["Storage"]


def image_cleanup(templates: dict[str, FlexTemplate]) -> list[dict]:
    """The Dataflow image repository's cleanup: the 10 newest versions and every image a deployed
    template names are kept; other versions go after 90 days. Without the templates (deployJobs
    false) nothing is deleted: the running jobs' images are not known here."""
    keep = [{"id": "keep-recent", "action": "KEEP", "most_recent_versions": {"keep_count": 10}}]
    digests = sorted({t.image.split("@", 1)[1] for t in templates.values()})
    if not digests:
        return keep
    return [
        *keep,
        {"id": "keep-deployed", "action": "KEEP", "condition": {"tag_state": "ANY", "version_name_prefixes": digests}},
        {"id": "delete-old", "action": "DELETE", "condition": {"tag_state": "ANY", "older_than": "7776000s"}},
    ]


class Storage(Area):
    def __init__(
        self,
        settings: Settings,
        identities: Identities,
        templates: dict[str, FlexTemplate],
        functions: tuple[str, ...],
        batch: BatchPackage,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("Storage", "storage", opts)
        self.settings, self.identities = settings, identities

        def bucket(purpose: str, rules: list[dict], versioning: bool = False) -> gcp.storage.Bucket:
            return gcp.storage.Bucket(
                f"bucket-{purpose}",
                project=settings.project,
                name=f"{settings.project}-{settings.prefix}-{purpose}",
                location=settings.region,
                uniform_bucket_level_access=True,
                public_access_prevention="enforced",
                versioning={"enabled": versioning},
                lifecycle_rules=rules,
                labels=settings.labels,
                force_destroy=not settings.protect_data,
                opts=self.child,
            )

        def older_than(days: int, prefixes: list[str] | None = None) -> dict:
            condition: dict = {"age": days}
            if prefixes:
                condition["matches_prefixes"] = prefixes
            return {"action": {"type": "Delete"}, "condition": condition}

        superseded = {
            "action": {"type": "Delete"},
            "condition": {"days_since_noncurrent_time": 30, "with_state": "ARCHIVED"},
        }
        # Only scratch space expires. What a running job, function or schedule still reads is never
        # deleted by age: a streaming job's workers fetch its staged files whenever they start or
        # scale (for months), and the workflow names today's batch code. Code objects are
        # content-named, so a new version is a new object and Pulumi deletes the one it replaces.
        self.dataflow = bucket("dataflow", [older_than(7, ["temp/"])])
        self.templates = bucket("templates", [superseded], versioning=True)
        self.sources = bucket("functions", [])
        self.batch = bucket("batch", [older_than(3, ["temp/"])])
        self.dataflow_temp = self.dataflow.name.apply(lambda b: f"gs://{b}/temp")
        self.dataflow_staging = self.dataflow.name.apply(lambda b: f"gs://{b}/staging")

        self.images = gcp.artifactregistry.Repository(
            "images",
            project=settings.project,
            location=settings.region,
            repository_id=settings.prefix,
            format="DOCKER",
            description="The StreamForge Dataflow image (dist/dataflow, built by Cloud Build)",
            cleanup_policies=image_cleanup(templates),
            labels=settings.labels,
            opts=self.child,
        )
        # the functions' images, built by Cloud Build as the fn-build account (build_config.docker_repository)
        self.function_images = gcp.artifactregistry.Repository(
            "function-images",
            project=settings.project,
            location=settings.region,
            repository_id=f"{settings.prefix}-functions",
            format="DOCKER",
            description="The StreamForge Cloud Functions' images (built by Cloud Build on deployment)",
            cleanup_policies=[{"id": "keep-recent", "action": "KEEP", "most_recent_versions": {"keep_count": 5}}],
            labels=settings.labels,
            opts=self.child,
        )
        gcp.artifactregistry.RepositoryIamMember(
            "function-images-fn-build-writer",
            project=settings.project,
            location=settings.region,
            repository=self.function_images.name,
            role="roles/artifactregistry.writer",
            member=identities.member("fn-build"),
            opts=self.child,
        )
        self.quay = (
            gcp.artifactregistry.Repository(
                "quay",
                project=settings.project,
                location=settings.region,
                repository_id=f"{settings.prefix}-quay",
                format="DOCKER",
                mode="REMOTE_REPOSITORY",
                description="quay.io through Artifact Registry (Debezium Server)",
                remote_repository_config={
                    "description": "quay.io",
                    "docker_repository": {"custom_repository": {"uri": "https://quay.io"}},
                },
                labels=settings.labels,
                opts=self.child,
            )
            if settings.cdc.enabled
            else None
        )

        self.template_paths = {
            name: self._upload(self.templates, f"template-{name}", template.path, f"templates/{name}.json")
            for name, template in templates.items()
        }
        self.function_sources = {
            name: self._upload(self.sources, f"source-{name}", archive, content_name(archive, "functions"))
            for name in functions
            for archive in [function_archive(settings.functions_dir, name)]
        }
        self.batch_files = [
            self._upload(self.batch, f"batch-{file.name}", file, content_name(file, "code")) for file in batch.files
        ]

        for workload in ("analytics", "cdc-job"):
            if workload in identities.accounts:
                self._grant(self.dataflow, "dataflow", workload, "roles/storage.objectAdmin")
                self._grant(self.templates, "templates", workload, "roles/storage.objectViewer")
                gcp.artifactregistry.RepositoryIamMember(
                    f"images-{workload}-reader",
                    project=settings.project,
                    location=settings.region,
                    repository=self.images.name,
                    role="roles/artifactregistry.reader",
                    member=identities.member(workload),
                    opts=self.child,
                )
        self._grant(self.batch, "batch", "batch", "roles/storage.objectAdmin")
        self._grant(self.sources, "functions", "fn-build", "roles/storage.objectViewer")
        self.register_outputs(
            {
                "buckets": {
                    "dataflow": self.dataflow.name,
                    "templates": self.templates.name,
                    "functions": self.sources.name,
                    "batch": self.batch.name,
                }
            }
        )

    def _upload(self, bucket: gcp.storage.Bucket, name: str, path: Path, object_name: str) -> gcp.storage.BucketObject:
        return gcp.storage.BucketObject(
            name, bucket=bucket.name, name=object_name, source=pulumi.FileAsset(str(path)), opts=self.child
        )

    def _grant(self, bucket: gcp.storage.Bucket, purpose: str, workload: str, role: str) -> None:
        gcp.storage.BucketIAMMember(
            f"bucket-{purpose}-{workload}-{role.split('.')[-1]}",
            bucket=bucket.name,
            role=role,
            member=self.identities.member(workload),
            opts=self.child,
        )

    def gs_path(self, obj: gcp.storage.BucketObject) -> pulumi.Output[str]:
        return pulumi.Output.concat("gs://", obj.bucket, "/", obj.name)
