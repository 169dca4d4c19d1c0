"""`streamforge pubsub create` against the real Pub/Sub emulator: the deployment's topics and
subscriptions (the ones the infrastructure program deploys), idempotent, usable at once."""

from __future__ import annotations

import time
import uuid

import pytest
from google.cloud import pubsub_v1

from streamforge.cdc.config import DebeziumServerConfig
from streamforge.config import load_config
from streamforge.topology import topology
from tests.support.cli import run_cli

pytestmark = pytest.mark.pubsub


@pytest.fixture()
def emulator(pubsub, monkeypatch):
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub)
    return pubsub


def test_create_makes_the_deployments_topics_and_subscriptions_once(emulator) -> None:
    project = f"sf-{uuid.uuid4().hex[:10]}"
    first = run_cli("pubsub", "create", "--project", project, "--dispatcher-url", "http://127.0.0.1:9/")
    assert first.exit_code == 0, first.output
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    layout = topology(load_config(), DebeziumServerConfig.load())
    topics = {t.name.rsplit("/", 1)[-1] for t in publisher.list_topics(project=f"projects/{project}")}
    assert topics == {t.id for t in layout.topics}
    found = {s.name.rsplit("/", 1)[-1]: s for s in subscriber.list_subscriptions(project=f"projects/{project}")}
    assert {name: s.topic.rsplit("/", 1)[-1] for name, s in found.items()} == {
        s.id: s.topic for s in layout.subscriptions
    }
    assert found["streamforge-alert-dispatcher"].push_config.push_endpoint == "http://127.0.0.1:9/"
    assert f"pubsub://projects/{project}/subscriptions/streamforge-analytics-clickstream" in first.output
    # usable at once: what the simulator publishes reaches the analytics job's subscription
    publisher.publish(publisher.topic_path(project, "clickstream"), b'{"x": 1}').result(timeout=10)
    path = subscriber.subscription_path(project, "streamforge-analytics-clickstream")
    pulled = subscriber.pull(subscription=path, max_messages=10, timeout=10).received_messages
    assert [m.message.data for m in pulled] == [b'{"x": 1}']
    again = run_cli("pubsub", "create", "--project", project)
    assert again.exit_code == 0 and "0 topics and 0 subscriptions created" in again.output


def test_without_cdc_or_a_dispatcher_url_those_are_left_out(emulator) -> None:
    project = f"sf-{uuid.uuid4().hex[:10]}"
    result = run_cli("pubsub", "create", "--project", project, "--no-cdc")
    assert result.exit_code == 0, result.output
    assert "not created: streamforge-alert-dispatcher (a push subscription: give --dispatcher-url)" in result.output
    topics = {t.name.rsplit("/", 1)[-1] for t in pubsub_v1.PublisherClient().list_topics(project=f"projects/{project}")}
    assert not [t for t in topics if t.startswith("cdc")] and "clickstream" in topics


def test_a_project_id_pubsub_would_refuse_is_explained(emulator) -> None:
    result = run_cli("pubsub", "create", "--project", "P")
    assert result.exit_code == 2
    assert "project 'P': a Google Cloud project id is 6-30 characters" in result.output


def test_without_the_emulator_it_says_how_to_start_one(monkeypatch) -> None:
    monkeypatch.delenv("PUBSUB_EMULATOR_HOST", raising=False)
    result = run_cli("pubsub", "create")
    assert result.exit_code == 2 and "PUBSUB_EMULATOR_HOST is not set" in result.output


def test_a_local_streaming_run_from_a_missing_subscription_fails_at_once_saying_which(emulator, tmp_path) -> None:
    project = f"sf-{uuid.uuid4().hex[:10]}"
    assert run_cli("pubsub", "create", "--project", project, "--no-cdc").exit_code == 0
    started = time.monotonic()
    result = run_cli(
        "run",
        "all",
        "--clickstream",
        f"pubsub://projects/{project}/subscriptions/streamforge-analytics-clickstream",
        "--orders",
        f"pubsub://projects/{project}/subscriptions/orders-typo",
        "--warehouse",
        f"duckdb://{tmp_path / 'w.duckdb'}",
    )
    assert result.exit_code == 2
    assert (
        f"no such subscription or topic on the Pub/Sub emulator at {emulator}: --orders "
        f"pubsub://projects/{project}/subscriptions/orders-typo. Create them first"
    ) in result.output
    assert "clickstream" not in result.output.split("emulator at")[1].split("Create")[0]  # only the missing one
    assert time.monotonic() - started < 30
    cdc = run_cli(
        "run",
        "cdc",
        "--input",
        f"pubsub://projects/{project}/subscriptions/streamforge-cdc-{{table}}",
        "--warehouse",
        f"duckdb://{tmp_path / 'c.duckdb'}",
    )  # created --no-cdc: none of them exists
    assert (
        cdc.exit_code == 2
        and f"--input pubsub://projects/{project}/subscriptions/streamforge-cdc-products" in cdc.output
    )
