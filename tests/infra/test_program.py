"""The Pulumi program, built once from the example stack with Pulumi's mocks, held to the
deployment's policies: every area present, failure handling on every subscription, least
privilege, secrets only through Secret Manager, one account per workload, names from the
project's own sources."""

from __future__ import annotations

import json
import re

from infra.identities import WORKLOADS
from infra.offline import FAKE_PROJECT_NUMBER, is_secret
from streamforge.cdc.config import DEBEZIUM_VERSION, DebeziumServerConfig
from streamforge.config import load_config
from streamforge.functions.ledger import EXPIRE_FIELD, LEDGER_ENV
from streamforge.naming import dataflow_job_name, function_name
from tests.support.infra import IMAGE, PROJECT, SECRETS, deploy_offline, stack

SERVICE_AGENT = f"serviceAccount:service-{FAKE_PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"


def email(workload: str) -> str:
    return f"streamforge-{workload}@{PROJECT}.iam.gserviceaccount.com"


def test_every_area_is_a_component_whose_resources_are_its_children(deployment) -> None:
    components = {r.urn: r for r in deployment.resources if not r.custom}
    assert {c.type for c in components.values()} == {
        f"streamforge:infra:{kind}"
        for kind in (
            "ProjectApis",
            "Identities",
            "Messaging",
            "Warehouse",
            "Storage",
            "AlertLedger",
            "Functions",
            "ChangeCapture",
            "DailyBatch",
            "Pipelines",
            "Observability",
        )
    }
    orphans = [r.name for r in deployment.resources if r.custom and r.parent not in components]
    assert orphans == []
    # every area waits for the APIs it needs
    apis = next(urn for urn, c in components.items() if c.type.endswith("ProjectApis"))
    services = {r.urn for r in deployment.resources if r.parent == apis}
    assert len(services) > 10
    for area in components.values():
        if not area.type.endswith("ProjectApis"):
            assert services <= set(area.dependencies), area.type


def test_every_resource_kind_of_the_platform_is_deployed(deployment) -> None:
    kinds = {r.type for r in deployment.resources if r.custom}
    for token in (
        "projects/service:Service",
        "pubsub/topic:Topic",
        "pubsub/subscription:Subscription",
        "bigquery/dataset:Dataset",
        "bigquery/table:Table",
        "storage/bucket:Bucket",
        "artifactregistry/repository:Repository",
        "dataflow/flexTemplateJob:FlexTemplateJob",
        "cloudfunctionsv2/function:Function",
        "secretmanager/secret:Secret",
        "sql/databaseInstance:DatabaseInstance",
        "cloudrunv2/service:Service",
        "workflows/workflow:Workflow",
        "cloudscheduler/job:Job",
        "firestore/database:Database",
        "firestore/field:Field",
        "monitoring/alertPolicy:AlertPolicy",
        "monitoring/dashboard:Dashboard",
        "monitoring/notificationChannel:NotificationChannel",
        "serviceaccount/account:Account",
    ):
        assert any(kind.endswith(token) for kind in kinds), token


def test_topics_come_from_the_config_and_the_debezium_properties(deployment) -> None:
    topics = {r.get("name") for r in deployment.of_type("pubsub/topic:Topic")}
    configured = load_config().topics
    debezium = DebeziumServerConfig.load()
    expected = {
        configured.clickstream,
        configured.orders,
        configured.fraud_alerts,
        configured.dead_letter,
        configured.undeliverable,
        debezium.heartbeat_topic,
    } | {debezium.topic(t) for t in debezium.tables}
    assert topics == expected


def test_every_subscription_handles_failure_the_way_its_consumer_can(deployment) -> None:
    topology = deployment.topology
    undeliverable = f"projects/{PROJECT}/topics/{topology.undeliverable}"
    bindings = {
        (b.get("subscription"), b.get("role"), b.get("member"))
        for b in deployment.of_type("pubsub/subscriptionIAMMember:SubscriptionIAMMember")
    }
    subscriptions = {r.get("name"): r for r in deployment.of_type("pubsub/subscription:Subscription")}
    assert set(subscriptions) == {s.id for s in topology.subscriptions}
    assert any(s.topic == topology.undeliverable for s in topology.subscriptions)  # else forwarded messages are lost
    for declared in topology.subscriptions:
        resource = subscriptions[declared.id]
        policy = resource.get("deadLetterPolicy")
        if declared.dataflow or declared.topic == topology.undeliverable:
            assert policy is None and resource.get("retryPolicy") is None, declared.id  # unsupported by Dataflow
        else:
            assert policy["deadLetterTopic"] == undeliverable and 5 <= policy["maxDeliveryAttempts"] <= 100
            assert resource.get("retryPolicy")["maximumBackoff"] == "600s"
            assert (declared.id, "roles/pubsub.subscriber", SERVICE_AGENT) in bindings, declared.id
        assert resource.get("messageRetentionDuration") == "604800s"
        assert resource.get("expirationPolicy") == {"ttl": ""}
    publishers = {
        (b.get("topic"), b.get("member"))
        for b in deployment.of_type("pubsub/topicIAMMember:TopicIAMMember")
        if b.get("role") == "roles/pubsub.publisher"
    }
    assert (topology.undeliverable, SERVICE_AGENT) in publishers
    # what Dataflow reads instead: the analytics job dead-letters to its own topic and table
    (job,) = [
        r for r in deployment.of_type("dataflow/flexTemplateJob:FlexTemplateJob") if r.get("name") == "streamforge-all"
    ]
    assert job.get("parameters")["dead_letter_topic"] == f"projects/{PROJECT}/topics/{load_config().topics.dead_letter}"


def test_the_alert_dispatcher_is_fed_by_an_authenticated_push_subscription(deployment) -> None:
    dispatcher = deployment.named("cloudfunctionsv2/function:Function", function_name("alert_dispatcher"))
    assert dispatcher.get("buildConfig", "entryPoint") == "dispatch_push"
    assert dispatcher.get("serviceConfig", "ingressSettings") == "ALLOW_INTERNAL_ONLY"
    push = deployment.named("pubsub/subscription:Subscription", "streamforge-alert-dispatcher")
    url = f"https://{function_name('alert_dispatcher')}-{FAKE_PROJECT_NUMBER}.europe-west1.run.app"
    assert push.get("topic") == f"projects/{PROJECT}/topics/fraud-alerts"
    assert push.get("pushConfig") == {
        "pushEndpoint": url,
        "oidcToken": {"serviceAccountEmail": email("alert-push"), "audience": url},
    }
    invokers = [
        (b.get("name"), b.get("member"))
        for b in deployment.of_type("cloudrunv2/serviceIamMember:ServiceIamMember")
        if b.get("role") == "roles/run.invoker"
    ]
    assert (function_name("alert_dispatcher"), f"serviceAccount:{email('alert-push')}") in invokers
    assert [m for n, m in invokers if n == function_name("alert_dispatcher")] == [
        f"serviceAccount:{email('alert-push')}"
    ]
    # the dispatcher's timeout covers every webhook taking its whole timeout
    hooks = json.loads(dispatcher.get("serviceConfig", "environmentVariables")["STREAMFORGE_WEBHOOKS"])
    assert dispatcher.get("serviceConfig", "timeoutSeconds") >= len(hooks) * 5


def test_no_basic_role_and_no_project_wide_admin_role(deployment) -> None:
    roles = [(r.type, r.get("role")) for r in deployment.resources if r.custom and r.get("role")]
    assert roles
    for kind, role in roles:
        assert role not in ("roles/owner", "roles/editor", "roles/viewer"), (kind, role)
        if kind.endswith("projects/iAMMember:IAMMember"):
            assert not re.search(r"admin", role, re.I), role
    project_wide = [r for r in deployment.of_type("projects/iAMMember:IAMMember")]
    # project-wide grants are only those with no narrower scope; each says why
    assert all(r.get("condition") is None or r.get("condition")["description"] for r in project_wide)
    assert {r.get("role") for r in project_wide} <= {
        "roles/dataflow.worker",
        "roles/bigquery.jobUser",
        "roles/datastore.user",
        "roles/logging.logWriter",
        "roles/dataproc.worker",
        "roles/bigquery.readSessionUser",
        "roles/dataproc.editor",
        "roles/workflows.invoker",
        "roles/cloudsql.client",
    }


def test_secret_values_reach_secret_manager_only_and_never_the_state_in_plain(deployment) -> None:
    values = [
        SECRETS["streamforge:cdcDatabasePassword"],
        SECRETS["streamforge:cdcPiiSalt"],
        *SECRETS["streamforge:ingestApiKeys"].split(","),
        *json.loads(SECRETS["streamforge:webhookSecrets"]).values(),
    ]
    for resource in deployment.resources:
        text = deployment.inputs_text(resource)
        assert not [v for v in values if v in text], resource.name
    versions = deployment.of_type("secretmanager/secretVersion:SecretVersion")
    assert versions and all(is_secret(v.inputs["secretDataWo"]) and "secretData" not in v.inputs for v in versions)
    (user,) = deployment.of_type("sql/user:User")
    assert is_secret(user.inputs["passwordWo"]) and "password" not in user.inputs
    # functions read their secrets from Secret Manager by reference
    ingest = deployment.named("cloudfunctionsv2/function:Function", function_name("ingest"))
    assert ingest.get("serviceConfig", "secretEnvironmentVariables") == [
        {
            "key": "STREAMFORGE_INGEST_API_KEYS",
            "projectId": PROJECT,
            "secret": "streamforge-ingest-api-keys",
            "version": "latest",
        }
    ]
    dispatcher = deployment.named("cloudfunctionsv2/function:Function", function_name("alert_dispatcher"))
    assert {e["key"] for e in dispatcher.get("serviceConfig", "secretEnvironmentVariables")} == {
        "RISK_WEBHOOK_URL",
        "RISK_WEBHOOK_SECRET",
    }
    readers = {
        (b.get("secretId"), b.get("member"))
        for b in deployment.of_type("secretmanager/secretIamMember:SecretIamMember")
    }
    assert readers == {
        ("streamforge-webhook-risk-webhook-url", f"serviceAccount:{email('dispatcher')}"),
        ("streamforge-webhook-risk-webhook-secret", f"serviceAccount:{email('dispatcher')}"),
        ("streamforge-ingest-api-keys", f"serviceAccount:{email('ingest')}"),
        ("streamforge-cdc-database-password", f"serviceAccount:{email('debezium')}"),
        ("streamforge-debezium-properties", f"serviceAccount:{email('debezium')}"),
    }


def _runs_as(deployment) -> dict[str, list[str]]:
    """email -> what runs as it (or acts with it), from every place an identity can be named."""
    users: dict[str, list[str]] = {}

    def use(address: str, what: str) -> None:
        users.setdefault(address.rsplit("/", 1)[-1], []).append(what)

    for job in deployment.of_type("dataflow/flexTemplateJob:FlexTemplateJob"):
        use(job.get("serviceAccountEmail"), f"dataflow {job.get('name')}")
    for function in deployment.of_type("cloudfunctionsv2/function:Function"):
        use(function.get("serviceConfig", "serviceAccountEmail"), f"function {function.get('name')}")
        use(function.get("buildConfig", "serviceAccount"), "function builds")
    for service in deployment.of_type("cloudrunv2/service:Service"):
        use(service.get("template", "serviceAccount"), f"cloud run {service.get('name')}")
    for workflow in deployment.of_type("workflows/workflow:Workflow"):
        use(workflow.get("serviceAccount"), f"workflow {workflow.get('name')}")
        steps = json.loads(workflow.get("sourceContents"))["main"]["steps"]
        body = next(s["run_batch"] for s in steps if "run_batch" in s)["args"]["body"]
        use(body["environmentConfig"]["executionConfig"]["serviceAccount"], "dataproc batch")
    for job in deployment.of_type("cloudscheduler/job:Job"):
        use(job.get("httpTarget", "oauthToken")["serviceAccountEmail"], f"scheduler {job.get('name')}")
    for subscription in deployment.of_type("pubsub/subscription:Subscription"):
        if subscription.get("pushConfig"):
            use(subscription.get("pushConfig", "oidcToken")["serviceAccountEmail"], f"push {subscription.get('name')}")
    return users


def test_every_service_account_is_used_by_exactly_its_workload(deployment) -> None:
    users = _runs_as(deployment)
    accounts = {r.get("accountId") for r in deployment.of_type("serviceaccount/account:Account")}
    assert accounts == {f"streamforge-{w}" for w in WORKLOADS}
    assert users == {
        email("analytics"): [f"dataflow {dataflow_job_name('all')}"],
        email("cdc-job"): [f"dataflow {dataflow_job_name('cdc')}"],
        email("dispatcher"): [f"function {function_name('alert_dispatcher')}"],
        email("ingest"): [f"function {function_name('ingest')}"],
        email("fn-build"): ["function builds", "function builds"],
        email("debezium"): ["cloud run streamforge-debezium"],
        email("batch-flow"): ["workflow streamforge-daily-batch"],
        email("batch"): ["dataproc batch"],
        email("scheduler"): ["scheduler streamforge-daily-batch"],
        email("alert-push"): ["push streamforge-alert-dispatcher"],
    }


def test_debezium_publishes_to_exactly_the_cdc_topics_with_the_projects_properties(deployment) -> None:
    debezium = DebeziumServerConfig.load()
    cdc_topics = {debezium.topic(t) for t in debezium.tables}
    may_publish = {
        b.get("topic")
        for b in deployment.of_type("pubsub/topicIAMMember:TopicIAMMember")
        if b.get("member") == f"serviceAccount:{email('debezium')}"
    }
    assert may_publish == cdc_topics | {debezium.heartbeat_topic}
    assert {s.topic for s in deployment.topology.consumed_by("cdc")} == cdc_topics
    (service,) = deployment.of_type("cloudrunv2/service:Service")
    assert service.get("scaling") == {"minInstanceCount": 1, "maxInstanceCount": 1}
    debezium_container, proxy = service.get("template", "containers")
    assert debezium_container["image"].endswith(f"/streamforge-quay/debezium/server:{DEBEZIUM_VERSION}")
    assert debezium_container["resources"]["cpuIdle"] is False
    assert debezium_container["volumeMounts"] == [{"name": "properties", "mountPath": "/debezium/config"}]
    env = {e["name"]: e.get("value") for e in debezium_container["envs"]}
    placeholders = {m for value in debezium.properties.values() for m in re.findall(r"\$\{(\w+)", value)}
    assert set(env) | {"PORT"} == placeholders == set(debezium.placeholders())  # Cloud Run sets PORT itself
    assert env["POSTGRES_HOST"] == "127.0.0.1" and env["POSTGRES_PASSWORD"] is None  # the password: from the secret
    assert proxy["args"][0] == f"{PROJECT}:europe-west1:streamforge-shop" and "--address=127.0.0.1" in proxy["args"]
    (instance,) = deployment.of_type("sql/databaseInstance:DatabaseInstance")
    assert {"name": "cloudsql.logical_decoding", "value": "on"} in instance.get("settings", "databaseFlags")
    assert not instance.get("settings", "ipConfiguration").get("authorizedNetworks")
    # the mounted file is the project's file, but for the salt of the hashed personal columns,
    # which goes into a property's name; as a secret (the salt is one)
    (properties,) = [
        v
        for v in deployment.of_type("secretmanager/secretVersion:SecretVersion")
        if v.name == "secret-debezium-properties-value"
    ]
    salt = SECRETS["streamforge:cdcPiiSalt"]
    assert is_secret(properties.inputs["secretDataWo"])
    assert properties.get("secretDataWo") == debezium.path.read_text(encoding="utf-8").replace("${CDC_PII_SALT}", salt)
    assert (
        f"column.mask.hash.v2.SHA-256.with.salt.{salt}=public.customers.email,public.customers.full_name"
        in properties.get("secretDataWo")
    )


def test_each_flex_template_job_passes_only_parameters_its_spec_declares(deployment, artifacts) -> None:
    jobs = deployment.of_type("dataflow/flexTemplateJob:FlexTemplateJob")
    assert {j.get("name") for j in jobs} == {dataflow_job_name("all"), dataflow_job_name("cdc")}
    for job in jobs:
        template = "cdc" if job.get("name") == dataflow_job_name("cdc") else "analytics"
        spec = json.loads((artifacts["templatesDir"] / f"{template}.json").read_text())
        declared = {p["name"]: p for p in spec["metadata"]["parameters"]}
        parameters = job.get("parameters")
        assert set(parameters) <= set(declared)
        assert {n for n, p in declared.items() if not p["isOptional"]} <= set(parameters)
        for name, value in parameters.items():
            assert all(re.match(regex, value) for regex in declared[name].get("regexes", ())), (name, value)
        assert job.get("containerSpecGcsPath") == f"gs://{PROJECT}-streamforge-templates/templates/{template}.json"
        assert job.get("sdkContainerImage") == spec["image"] == IMAGE
        assert job.get("enableStreamingEngine") is True and job.get("onDelete") == "drain"
        assert job.get("labels")["streamforge-job"] in ("all", "cdc") and job.get("maxWorkers") == 3


def test_the_alert_ledger_expires_where_the_dispatcher_writes(deployment) -> None:
    (database,) = deployment.of_type("firestore/database:Database")
    (ttl,) = deployment.of_type("firestore/field:Field")
    dispatcher = deployment.named("cloudfunctionsv2/function:Function", function_name("alert_dispatcher"))
    ledger = dispatcher.get("serviceConfig", "environmentVariables")[LEDGER_ENV]
    assert ledger == f"firestore://{database.get('name')}/{ttl.get('collection')}"
    assert ttl.get("field") == EXPIRE_FIELD and ttl.get("ttlConfig") == {}


def test_alerts_watch_every_subscription_job_function_and_the_batch(deployment) -> None:
    policies = deployment.of_type("monitoring/alertPolicy:AlertPolicy")
    filters = [c["conditionThreshold"]["filter"] for p in policies for c in p.get("conditions")]
    text = "\n".join(filters)
    for subscription in deployment.topology.subscriptions:
        assert f'subscription_id = "{subscription.id}"' in text, subscription.id
    for job in (dataflow_job_name("all"), dataflow_job_name("cdc")):
        for metric in ("job/system_lag", "job/data_watermark_age"):
            assert any(f'job_name = "{job}"' in f and metric in f for f in filters), (job, metric)
    for function in (function_name("alert_dispatcher"), function_name("ingest")):
        assert any(f'service_name = "{function}"' in f and "5xx" in f for f in filters)
    assert any("finished_execution_count" in f and 'status = "FAILED"' in f for f in filters)
    channels = deployment.of_type("monitoring/notificationChannel:NotificationChannel")
    assert [c.get("labels") for c in channels] == [{"email_address": "data-oncall@example.com"}]
    assert all(len(p.get("notificationChannels")) == len(channels) for p in policies)
    (dashboard,) = deployment.of_type("monitoring/dashboard:Dashboard")
    assert "dataflow.googleapis.com/job/user_counter" in dashboard.get("dashboardJson")


def test_without_an_edge_domain_ingest_answers_on_its_own_url(deployment) -> None:
    ingest = deployment.named("cloudfunctionsv2/function:Function", function_name("ingest"))
    assert ingest.get("serviceConfig", "ingressSettings") == "ALLOW_ALL"
    assert deployment.of_type("compute/securityPolicy:SecurityPolicy") == []


def test_the_ingest_edge_limits_each_key_and_ip_and_is_the_only_way_in(artifacts) -> None:
    edged = deploy_offline(
        *stack(artifacts, ingestEdge={"domain": "events.shop.example.com", "requestsPerMinutePerKey": 300})
    )
    ingest = edged.named("cloudfunctionsv2/function:Function", function_name("ingest"))
    assert ingest.get("serviceConfig", "ingressSettings") == "ALLOW_INTERNAL_AND_GCLB"  # no way around the edge
    policy = edged.named("compute/securityPolicy:SecurityPolicy", "streamforge-ingest")
    throttles = {
        rule["rateLimitOptions"]["enforceOnKey"]: rule["rateLimitOptions"]
        for rule in policy.get("rules")
        if rule["action"] == "throttle"
    }
    header = load_config().ingest.api_key_header
    assert throttles["HTTP_HEADER"]["enforceOnKeyName"] == header
    assert throttles["HTTP_HEADER"]["rateLimitThreshold"] == {"count": 300, "intervalSec": 60}
    assert throttles["IP"]["rateLimitThreshold"] == {"count": 120, "intervalSec": 60}
    assert {rule["exceedAction"] for rule in throttles.values()} == {"deny(429)"}
    neg = edged.named("compute/regionNetworkEndpointGroup:RegionNetworkEndpointGroup", "streamforge-ingest")
    assert neg.get("cloudRun", "service") == function_name("ingest")
    backend = edged.named("compute/backendService:BackendService", "streamforge-ingest")
    assert backend.get("securityPolicy") and backend.get("loadBalancingScheme") == "EXTERNAL_MANAGED"
    certificate = edged.named("compute/managedSslCertificate:ManagedSslCertificate", "streamforge-ingest")
    assert certificate.get("managed", "domains") == ["events.shop.example.com"]
    rule = edged.named("compute/globalForwardingRule:GlobalForwardingRule", "streamforge-ingest")
    assert rule.get("portRange") == "443"
    components = {r.urn: r for r in edged.resources if not r.custom}
    (edge,) = [c for c in components.values() if c.type == "streamforge:infra:IngestEdge"]
    assert all(
        r.parent == edge.urn
        for r in edged.resources
        if r.type.startswith("gcp:compute/") and r.get("name") == "streamforge-ingest"
    )
