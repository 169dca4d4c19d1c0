"""Access from behaviour, held against the plan: every workload runs here against the emulators
and stand-ins, with the names, parameters and environment the plan deploys it with, and every
Google API call it makes is recorded (tests/support/access_site). Each call needs an IAM
permission on a resource (tests/support/access.py); the plan's grants to the workload's account
must cover each one, and each grant must be used by one.

What runs, as what:
- analytics, cdc-job: each Flex Template launched as Google's launcher launches it (the staged
  files it writes, as the job's account); the job it wrote (the Pub/Sub reads and BigQuery writes
  Dataflow performs, the image its workers pull, the staged files they read); the analytics job
  run here on the Pub/Sub emulator (the alerts and dead letters it publishes itself); the CDC
  job's replica-view step run on the BigQuery emulator;
- debezium: the connector with the production properties, publishing as Debezium Server's sink;
- dispatcher, ingest: the packaged functions served from their requirements, with the plan's
  environment (the variables it fills from Secret Manager among them), called once each;
- batch, batch-flow, scheduler, alert-push: what Google runs as them, from the plan's own code
  (the workflow's source, the scheduler's target, the push subscription) and the batch's
  command line (its Spark BigQuery connector cannot run here);
- fn-build and the platform's own needs: tests/support/access.py PLATFORM, each with why.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from infra.offline import Recorded
from streamforge.cdc.config import DebeziumServerConfig
from streamforge.config import load_config
from streamforge.functions.packaging import package
from streamforge.naming import function_name
from streamforge.packaging import REPO_ROOT, build_wheel
from streamforge.pubsub_setup import create_topology
from streamforge.schemas import get_schema
from streamforge.timeutil import format_timestamp
from tests.support.access import PLATFORM, Access, check, grants, read_log
from tests.support.capture import ROLE_PASSWORD, as_user, new_role
from tests.support.cli import STREAMFORGE, entry_point_env, run_cli
from tests.support.functions import API_KEY, packaged_environment, running_function
from tests.support.metadata_server import metadata_server
from tests.support.pubsub import pull_messages
from tests.support.receivers import ScriptedReceiver
from tests.support.samples import ALERT, sample
from tests.support.servers import fresh_database

pytestmark = [pytest.mark.slow, pytest.mark.pubsub, pytest.mark.postgres]

PROJECT, PREFIX = "my-shop-analytics", "streamforge"
ACCESS_SITE = Path(__file__).parents[1] / "support" / "access_site"
RUN_DOFN = Path(__file__).parents[1] / "support" / "run_dofn.py"


def _account(workload: str) -> str:
    return f"{PREFIX}-{workload}@{PROJECT}.iam.gserviceaccount.com"


def _recorded(log: Path, workload: str, **env: str) -> dict[str, str]:
    return {"PYTHONPATH": str(ACCESS_SITE), "STREAMFORGE_ACCESS_LOG": str(log), "STREAMFORGE_WORKLOAD": workload, **env}


def _one(resources: list[Recorded], token: str, **inputs: Any) -> Recorded:
    (found,) = [r for r in resources if r.type.endswith(token) and all(r.get(k) == v for k, v in inputs.items())]
    return found


def _secret_variables(resources: list[Recorded]) -> dict[str, str]:
    """Environment variable -> the secret a deployment fills it from (functions and Cloud Run)."""
    found = {}
    for function in [r for r in resources if r.type.endswith("cloudfunctionsv2/function:Function")]:
        for entry in function.get("serviceConfig", "secretEnvironmentVariables") or []:
            found[entry["key"]] = f"projects/{PROJECT}/secrets/{entry['secret']}"
    for service in [r for r in resources if r.type.endswith("cloudrunv2/service:Service")]:
        for container in service.get("template", "containers"):
            for entry in container.get("envs") or []:
                ref = (entry.get("valueSource") or {}).get("secretKeyRef")
                if ref:
                    found[entry["name"]] = f"projects/{PROJECT}/secrets/{ref['secret']}"
    return found


# -- the Dataflow jobs -------------------------------------------------------------------------


def _launch(job: Recorded, workload: str, storage: str, log: Path, tmp: Path) -> tuple[dict, bytes]:
    """The template's main.py with Google's launcher's arguments for ``job`` (as the plan deploys
    it), as the job's account; the job object and pipeline proto it wrote."""
    from google.cloud import storage as gcs

    staging = job.get("stagingLocation")
    location = f"{staging}/template_launches/2026-12-07_00_00_00-{workload}/job_object"
    parameters = [f"--{name}={value}" for name, value in job.get("parameters").items()]
    with metadata_server(_account(workload), PROJECT) as vm:
        process = subprocess.run(
            [
                sys.executable,
                str(REPO_ROOT / "dataflow" / "main.py"),
                "--runner=DataflowRunner",
                f"--project={PROJECT}",
                f"--region={job.get('region')}",
                f"--job_name={job.get('name')}",
                f"--staging_location={staging}",
                f"--temp_location={job.get('tempLocation')}",
                f"--template_location={location}",
                f"--sdk_container_image={job.get('sdkContainerImage')}",
                f"--service_account_email={_account(workload)}",
                "--enable_streaming_engine",
                *parameters,
            ],
            cwd=tmp,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            env=entry_point_env(**vm, STORAGE_EMULATOR_HOST=storage, **_recorded(log, workload)),
            timeout=300,
        )
    assert process.returncode == 0, process.stderr[-4000:]
    client = gcs.Client(project=PROJECT)

    def read(url: str) -> bytes:
        bucket, _, name = url.removeprefix("gs://").partition("/")
        return client.bucket(bucket).blob(name).download_as_bytes()

    written = json.loads(read(location))
    return written, read(written["environment"]["sdkPipelineOptions"]["options"]["pipelineUrl"])


def _from_the_written_job(workload: str, written: dict, proto: bytes) -> set[Access]:
    """What Dataflow does as the job's account: its workers pull the image and read the staged
    files; its Pub/Sub reads (consume, and the subscription's metadata for the backlog and the
    watermark); its BigQuery writes (streaming inserts into existing tables)."""
    from apache_beam.portability.api import beam_runner_api_pb2

    from tests.support.dataflow import bigquery_writes, pubsub_reads

    pipeline = beam_runner_api_pb2.Pipeline.FromString(proto)
    source = "the written job"
    options = written["environment"]["sdkPipelineOptions"]["options"]
    image = options["sdk_container_image"]
    repository = image.split("/")[2]
    staging_bucket = options["pipelineUrl"].removeprefix("gs://").split("/")[0]
    found = {
        Access(workload, "artifactregistry.repositories.downloadArtifacts", f"repositories/{repository}", source),
        Access(workload, "storage.objects.get", f"buckets/{staging_bucket}", source),
    }
    for subscription in pubsub_reads(pipeline):
        found.add(Access(workload, "pubsub.subscriptions.consume", subscription, source))
        found.add(Access(workload, "pubsub.subscriptions.get", subscription, source))
    for table in bigquery_writes(pipeline):
        project, dataset = table.split(":")[0], table.split(":")[1].split(".")[0]
        found.add(Access(workload, "bigquery.tables.updateData", f"projects/{project}/datasets/{dataset}", source))
    return found


def _publish(publisher: Any, topic: str, subject: str, record: dict | None = None, raw: bytes | None = None):
    now = format_timestamp(datetime.now(timezone.utc))
    if raw is not None:
        return publisher.publish(topic, raw, event_time=now, encoding="json")
    data = get_schema(subject).to_json(record)
    return publisher.publish(
        topic, data, event_id=record["event_id"], event_time=format_timestamp(record["event_time"]), encoding="json"
    )


def _run_analytics(job: Recorded, pubsub: str, log: Path, tmp: Path) -> None:
    """The analytics job with the deployed parameters on the Pub/Sub emulator (a local warehouse),
    until it has published an alert and dead letters."""
    from google.cloud import pubsub_v1

    parameters = job.get("parameters")
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    watch = {}
    for name in ("alerts_topic", "dead_letter_topic"):
        watch[name] = subscriber.create_subscription(
            name=subscriber.subscription_path(PROJECT, f"access-test-{name.replace('_', '-')}"), topic=parameters[name]
        ).name
    process = subprocess.Popen(
        [
            str(STREAMFORGE),
            "run",
            "all",
            "--clickstream",
            parameters["clickstream"],
            "--orders",
            parameters["orders"],
            *(["--catalog", parameters["catalog"]] if "catalog" in parameters else []),
            "--warehouse",
            f"duckdb://{tmp / 'warehouse.duckdb'}",
            "--alerts-topic",
            parameters["alerts_topic"],
            "--dead-letter-topic",
            parameters["dead_letter_topic"],
        ],
        cwd=tmp,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=entry_point_env(PUBSUB_EMULATOR_HOST=pubsub, **_recorded(log, "analytics")),
        start_new_session=True,
    )
    try:
        configured = load_config().topics
        topics = {
            "clickstream": publisher.topic_path(PROJECT, configured.clickstream),
            "orders": publisher.topic_path(PROJECT, configured.orders),
        }
        now = datetime.now(timezone.utc).replace(microsecond=0)
        orders = [
            sample(
                "order_event", event_id=f"o{i}", order_id=f"O{i}", user_id="fay", event_time=now + timedelta(seconds=i)
            )
            for i in range(3)
        ]
        futures = [_publish(publisher, topics["orders"], "order_event", o) for o in orders]
        futures.append(_publish(publisher, topics["clickstream"], "clickstream_event", raw=b'{"event_id": 42'))
        futures.append(
            _publish(publisher, topics["clickstream"], "clickstream_event", sample("clickstream_event", event_time=now))
        )
        for future in futures:
            future.result(timeout=30)
        assert pull_messages(subscriber, watch["alerts_topic"], count=1, timeout=120)
        assert pull_messages(subscriber, watch["dead_letter_topic"], count=1, timeout=60)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


# -- Debezium, the functions -------------------------------------------------------------------


def _run_debezium(shop_db: str, pubsub: str, log: Path, tmp: Path) -> None:
    """The connector, production properties, publishing to the emulator as Debezium Server's sink."""
    debezium = DebeziumServerConfig.load()
    user = new_role(shop_db)
    assert run_cli("cdc", "setup", "-d", shop_db, "--user", user, "--schema").exit_code == 0
    subprocess.run(
        [str(STREAMFORGE), "cdc", "workload", "-d", shop_db, "--operations", "40", "--rate", "0", "-q"],
        check=True,
        capture_output=True,
        env=entry_point_env(),
    )
    process = subprocess.Popen(
        [
            str(STREAMFORGE),
            "cdc",
            "run",
            "-d",
            as_user(shop_db, user, ROLE_PASSWORD),
            "-o",
            f"pubsub://{PROJECT}",
            "--offsets",
            "database",
            "-q",
        ],
        cwd=tmp,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=entry_point_env(PUBSUB_EMULATOR_HOST=pubsub, CDC_PII_SALT="ab" * 16, **_recorded(log, "debezium")),
    )
    try:
        wanted = {f"projects/{PROJECT}/topics/{debezium.topic(t)}" for t in debezium.tables}
        wanted.add(f"projects/{PROJECT}/topics/{debezium.heartbeat_topic}")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            published = (
                {json.loads(line).get("topic") for line in log.read_text().splitlines()} if log.exists() else set()
            )
            if wanted <= published:
                break
            assert process.poll() is None, process.stderr.read()
            time.sleep(0.5)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, process.stderr.read()


def _function_env(function: Recorded) -> dict[str, str]:
    return dict(function.get("serviceConfig", "environmentVariables") or {})


def _run_functions(resources: list[Recorded], pubsub: str, firestore: str, log: Path, tmp: Path) -> None:
    wheel = build_wheel(tmp / "wheel")
    dispatcher = _one(resources, "cloudfunctionsv2/function:Function", name=function_name("alert_dispatcher"))
    ingest = _one(resources, "cloudfunctionsv2/function:Function", name=function_name("ingest"))
    with ScriptedReceiver() as receiver:
        package("alert_dispatcher", tmp / "dist", wheel)
        environment = packaged_environment(tmp / "dist" / "alert_dispatcher", tmp / "env-dispatcher")
        env = _function_env(dispatcher)
        # the deployed webhooks, pointed at a receiver here (a private address: allowed for the test)
        hooks = [{**hook, "allow_private": True} for hook in json.loads(env["STREAMFORGE_WEBHOOKS"])]
        env["STREAMFORGE_WEBHOOKS"] = json.dumps(hooks)
        for hook in hooks:
            env[hook["url_env"]] = receiver.url("/risk")
            env[hook["secret_env"]] = "test-signing-secret-0123456789"
        with running_function(
            "alert_dispatcher",
            {**env, "FIRESTORE_EMULATOR_HOST": firestore, **_recorded(log, "dispatcher")},
            bundle=tmp / "dist" / "alert_dispatcher",
            python=environment.python,
            push=True,
        ) as function:
            import base64

            body = {"message": {"data": base64.b64encode(json.dumps(ALERT).encode()).decode(), "messageId": "m-1"}}
            assert requests.post(function.url, json=body, timeout=30).status_code == 204
        assert len(receiver.on("/risk")) == 1
    package("ingest", tmp / "dist", wheel)
    environment = packaged_environment(tmp / "dist" / "ingest", tmp / "env-ingest")
    with running_function(
        "ingest",
        {
            **_function_env(ingest),
            "STREAMFORGE_INGEST_API_KEYS": f"server:{API_KEY}",
            "PUBSUB_EMULATOR_HOST": pubsub,
            "STREAMFORGE_CONFIG": str(_replay_config(tmp)),
            **_recorded(log, "ingest"),
        },
        bundle=tmp / "dist" / "ingest",
        python=environment.python,
    ) as function:
        events = {"clickstream": [sample("clickstream_event")], "orders": [sample("order_event")]}
        answer = requests.post(function.url, json=events, headers={"X-API-Key": API_KEY}, timeout=30)
        assert answer.status_code == 200, answer.text


def _replay_config(tmp: Path) -> Path:
    from tests.support.functions import REPLAY_CONFIG

    path = tmp / "replay.toml"
    path.write_text(REPLAY_CONFIG)
    return path


# -- what Google runs as the other accounts, from the plan's own code ---------------------------


def _from_the_plan(resources: list[Recorded]) -> set[Access]:
    found: set[Access] = set()
    workflow = _one(resources, "workflows/workflow:Workflow")
    for step in json.loads(workflow.get("sourceContents"))["main"]["steps"]:
        for call in step.values():
            if call.get("call") == "googleapis.dataproc.v1.projects.locations.batches.create":
                found.add(
                    Access("batch-flow", "dataproc.batches.create", f"projects/{PROJECT}", "the workflow's source")
                )
                runs_as = call["args"]["body"]["environmentConfig"]["executionConfig"]["serviceAccount"]
                found.add(
                    Access(
                        "batch-flow",
                        "iam.serviceAccounts.actAs",
                        f"serviceAccounts/projects/{PROJECT}/serviceAccounts/{runs_as}",
                        "the workflow's source",
                    )
                )
                args = call["args"]["body"]["pysparkBatch"]["args"]
                found |= _batch_accesses(args)
    schedule = _one(resources, "cloudscheduler/job:Job")
    if re.search(r"/workflows/[^/]+/executions$", schedule.get("httpTarget", "uri")):
        found.add(Access("scheduler", "workflows.executions.create", f"projects/{PROJECT}", "the scheduler's target"))
    for subscription in [r for r in resources if r.type.endswith("pubsub/subscription:Subscription")]:
        push = subscription.get("pushConfig")
        if push and push.get("oidcToken"):
            workload = push["oidcToken"]["serviceAccountEmail"].split("@")[0].removeprefix(f"{PREFIX}-")
            service = function_name("alert_dispatcher")  # the endpoint: its Cloud Run URL
            assert push["pushEndpoint"].startswith(f"https://{service}-")
            found.add(Access(workload, "run.routes.invoke", f"services/{service}", "the push subscription"))
    return found


def _batch_accesses(args: list[str]) -> set[Access]:
    """The daily batch on Dataproc, from its command line (its own parser) and the tables its job
    reads and writes: the Spark BigQuery connector reads through the Storage Read API, writes with
    load jobs staged in the temporary bucket."""
    from batch.daily_metrics import argument_parser

    parsed = argument_parser().parse_args([a.replace("${day}", "2026-12-06") for a in args])
    source = "the batch's command line"
    project, dataset = parsed.input.removeprefix("bigquery://").split(".")
    where = f"projects/{project}/datasets/{dataset}"
    found = {
        Access("batch", "bigquery.readsessions.create", f"projects/{project}", source),
        Access("batch", "bigquery.tables.getData", where, source),
        Access("batch", "bigquery.jobs.create", f"projects/{project}", source),
        Access("batch", "bigquery.tables.updateData", where, source),
        Access("batch", "bigquery.tables.create", where, source),
    }
    for permission in (
        "storage.objects.create",
        "storage.objects.get",
        "storage.objects.delete",
        "storage.objects.list",
    ):
        found.add(Access("batch", permission, f"buckets/{parsed.temporary_gcs_bucket}", source))
    return found


def _platform() -> set[Access]:
    buckets = {purpose: f"{PROJECT}-{PREFIX}-{purpose}" for purpose in ("dataflow", "templates", "functions", "batch")}
    found = set()
    for workload, needs in PLATFORM.items():
        for permission, pattern, why in needs:
            resource = re.sub(r"\{bucket:(\w+)\}", lambda m: buckets[m.group(1)], pattern)
            found.add(Access(workload, permission, resource.format(project=PROJECT, prefix=PREFIX), f"platform: {why}"))
    return found


@pytest.fixture(scope="module")
def behaviour(
    deployment, pubsub, firestore, storage, bigquery, postgres_cluster, tmp_path_factory, monkeypatch_module
) -> set[Access]:
    """Every workload run as deployed, its Google API calls recorded; all of them as accesses."""
    from google.cloud import pubsub_v1
    from google.cloud import storage as gcs

    tmp = tmp_path_factory.mktemp("access")
    log = tmp / "calls.jsonl"
    monkeypatch_module.setenv("PUBSUB_EMULATOR_HOST", pubsub)
    monkeypatch_module.setenv("STORAGE_EMULATOR_HOST", storage)
    resources = deployment.resources
    create_topology(pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient(), PROJECT, deployment.topology)
    client = gcs.Client(project=PROJECT)
    for purpose in ("dataflow", "templates"):
        name = f"{PROJECT}-{PREFIX}-{purpose}"
        if client.lookup_bucket(name) is None:
            client.create_bucket(name)

    written: set[Access] = set()
    jobs = {"analytics": "streamforge-all", "cdc-job": "streamforge-cdc"}
    protos = {}
    for workload, name in jobs.items():
        job = _one(resources, "dataflow/flexTemplateJob:FlexTemplateJob", name=name)
        job_object, protos[workload] = _launch(job, workload, storage, log, tmp)
        written |= _from_the_written_job(workload, job_object, protos[workload])
    _run_analytics(
        _one(resources, "dataflow/flexTemplateJob:FlexTemplateJob", name="streamforge-all"), pubsub, log, tmp
    )
    with fresh_database(postgres_cluster) as shop_db:
        _run_debezium(shop_db, pubsub, log, tmp)
    _run_functions(resources, pubsub, firestore, log, tmp)

    secrets = _secret_variables(resources)
    debezium = DebeziumServerConfig.load()
    # Debezium Server fills its properties' placeholders from the environment (it is Java: the
    # properties file is what it reads); the file itself is mounted from its secret at start
    configured = {
        Access("debezium", "secretmanager.versions.access", secrets[name], "the properties file's placeholders")
        for name in debezium.placeholders()
        if name in secrets
    }
    (properties,) = [r for r in resources if r.type.endswith("cloudrunv2/service:Service")]
    for volume in properties.get("template", "volumes"):
        secret = volume["secret"]["secret"]
        configured.add(
            Access(
                "debezium", "secretmanager.versions.access", f"projects/{PROJECT}/secrets/{secret}", "the mounted file"
            )
        )
    return read_log(log, secrets) | written | configured | _from_the_plan(resources) | _platform()


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_every_grant_is_used_and_every_access_is_granted(deployment, behaviour) -> None:
    plan = grants(deployment.resources, PROJECT, PREFIX)
    missing, unused = check(behaviour, plan)
    print("\n".join(sorted(map(str, behaviour))))
    assert missing == [], "accesses without a grant:\n" + "\n".join(map(str, missing))
    assert unused == [], "grants no code uses:\n" + "\n".join(map(str, unused))
    observed = {a.workload for a in behaviour if a.source == "observed"}
    assert observed == {"analytics", "cdc-job", "debezium", "dispatcher", "ingest"}


def test_the_record_catches_a_missing_grant(deployment, behaviour) -> None:
    plan = grants(deployment.resources, PROJECT, PREFIX)
    # the rehearsal's finding: the analytics job without its publisher grants
    without = [g for g in plan if not (g.workload == "analytics" and g.role == "roles/pubsub.publisher")]
    missing, _ = check(behaviour, without)
    assert {(a.permission, a.resource) for a in missing} == {
        ("pubsub.topics.publish", f"projects/{PROJECT}/topics/fraud-alerts"),
        ("pubsub.topics.publish", f"projects/{PROJECT}/topics/dead-letter"),
    }
    # a grant removed on purpose: ingest may no longer publish orders
    (orders,) = [g for g in plan if g.workload == "ingest" and g.resource.endswith("/topics/orders")]
    missing, _ = check(behaviour, [g for g in plan if g != orders])
    assert [(a.workload, a.resource) for a in missing] == [("ingest", f"projects/{PROJECT}/topics/orders")]
    # and a grant nobody's code uses is reported
    _, unused = check([a for a in behaviour if a.workload != "scheduler"], plan)
    assert [g.workload for g in unused] == ["scheduler"]
