"""What a deployment meets after its first day: updates that replace a job, `pulumi destroy` and
the next `up`, lifecycle rules running for months, IAM conditions and probes as Google evaluates
them. Each check is one of the rehearsal's findings, held as a policy of the plan."""

from __future__ import annotations

from infra.apis import SERVICES
from tests.support.infra import IMAGE, deploy_offline, stack

#: Services whose IAM conditions may name a resource (resource.name): Google's list of services
#: that recognise resource attributes ("Resource attributes for IAM Conditions"); the roles
#: this program conditions are of these. Artifact Registry and Workflows are not on it: there a
#: condition on resource.name would grant nothing.
RESOURCE_ATTRIBUTES = {"roles/datastore.user": "firestore", "roles/cloudsql.client": "sqladmin"}


def test_a_replaced_streaming_job_is_drained_before_its_successor_starts(deployment) -> None:
    jobs = deployment.of_type("dataflow/flexTemplateJob:FlexTemplateJob")
    assert jobs and all(j.delete_before_replace and j.get("onDelete") == "drain" for j in jobs)


def test_destroy_removes_the_ledger_database_and_a_short_prefix_still_names_it(artifacts) -> None:
    deployment = deploy_offline(*stack(artifacts, prefix="sfx"))
    (database,) = deployment.of_type("firestore/database:Database")
    assert database.get("deletionPolicy") == "DELETE"  # ABANDON (the default) blocks the next `up` on its name
    assert 4 <= len(database.get("name")) <= 63 and database.get("name") == "sfx-ledger"


def test_only_scratch_space_expires(deployment) -> None:
    for bucket in deployment.of_type("storage/bucket:Bucket"):
        for rule in bucket.get("lifecycleRules") or []:
            condition = rule["condition"]
            if condition.get("withState") == "ARCHIVED":
                continue  # superseded versions of a versioned bucket
            assert condition.get("matchesPrefixes") and all(
                p.startswith("temp/") for p in condition["matchesPrefixes"]
            ), (
                bucket.get("name"),
                rule,
            )


def test_the_image_cleanup_keeps_what_the_deployed_jobs_run(deployment) -> None:
    images = deployment.named("artifactregistry/repository:Repository", "images")
    policies = {p["id"]: p for p in images.get("cleanupPolicies")}
    digest = IMAGE.split("@", 1)[1]
    assert policies["keep-deployed"]["action"] == "KEEP"
    assert policies["keep-deployed"]["condition"]["versionNamePrefixes"] == [digest]
    assert policies["delete-old"]["action"] == "DELETE"  # KEEP wins over DELETE in Artifact Registry


def test_iam_conditions_only_where_the_service_evaluates_them(deployment) -> None:
    conditioned = [r for r in deployment.of_type("projects/iAMMember:IAMMember") if r.get("condition")]
    assert conditioned
    for grant in conditioned:
        assert grant.get("role") in RESOURCE_ATTRIBUTES, grant.get("role")
    # the functions' build writes its images to a repository of ours, granted on the repository
    functions = deployment.named("artifactregistry/repository:Repository", "function-images")
    writers = [
        r
        for r in deployment.of_type("artifactregistry/repositoryIamMember:RepositoryIamMember")
        if r.get("role") == "roles/artifactregistry.writer"
    ]
    assert [w.get("member") for w in writers] == [
        "serviceAccount:streamforge-fn-build@my-shop-analytics.iam.gserviceaccount.com"
    ]
    repository = f"projects/my-shop-analytics/locations/europe-west1/repositories/{functions.get('repositoryId')}"
    for function in deployment.of_type("cloudfunctionsv2/function:Function"):
        assert function.get("buildConfig", "dockerRepository") == repository


def test_the_cloud_sql_proxy_listens_on_loopback_only_and_debezium_starts_after_it(deployment) -> None:
    """The proxy's database port is for Debezium only (127.0.0.1) and it opens no other port: a
    health endpoint Cloud Run could probe would have to listen on every interface (its probes
    come from outside the container). Debezium starts after it and its own probe waits for the
    connector."""
    (service,) = deployment.of_type("cloudrunv2/service:Service")
    debezium, proxy = service.get("template", "containers")
    args = proxy["args"]
    assert "--address=127.0.0.1" in args
    assert not [a for a in args if a.startswith(("--http-address", "--health-check", "--admin-port"))]
    assert "startupProbe" not in proxy
    assert debezium["dependsOns"] == [proxy["name"]]
    assert debezium["startupProbe"]["httpGet"]["path"] == "/q/health/ready"


def test_the_apis_the_program_calls_are_enabled() -> None:
    assert "cloudresourcemanager.googleapis.com" in SERVICES  # project IAM bindings go through it
