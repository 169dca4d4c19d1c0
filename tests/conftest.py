"""Fixtures shared by the whole suite: simulator runs and local servers (emulators, a Kafka-compatible
broker, a PostgreSQL cluster with a database per test)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, ContextManager, Iterator

import pytest

from tests.support.cli import simulate_to
from tests.support.servers import (
    GoogleCloudEmulators,
    ServerUnavailable,
    firestore_emulator,
    fresh_database,
    google_cloud_emulators,
    kafka_broker,
    postgres_server,
    pubsub_emulator,
)


@pytest.fixture(autouse=True)
def _no_user_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start from the embedded defaults unless they set a config themselves."""
    monkeypatch.delenv("STREAMFORGE_CONFIG", raising=False)


@pytest.fixture(scope="session")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two simulated hours on the embedded defaults (seed 42): what `make demo` writes."""
    return simulate_to(tmp_path_factory.mktemp("default-run"))


@pytest.fixture(scope="session")
def faulty_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One hour with 2% malformed messages and 2% duplicates."""
    return simulate_to(
        tmp_path_factory.mktemp("faulty-run"), "--duration", "1h", "--malformed", "0.02", "--duplicates", "0.02"
    )


def _started(server: Callable[[], ContextManager[str]], what: str, ci_installs: str | None = None) -> Iterator[str]:
    """The address of ``server`` while the test session runs; a skip, saying why, if it is not
    installed, except in CI when ``ci_installs`` names what installs it there."""
    try:
        with server() as address:
            yield address
    except ServerUnavailable as exc:
        if ci_installs and os.environ.get("CI") == "true":
            pytest.fail(f"{ci_installs} must install the {what}: {exc}")
        pytest.skip(f"no {what}: {exc}")


@pytest.fixture(scope="session")
def kafka() -> Iterator[str]:
    """HOST:PORT of a Kafka-compatible broker started for this test session."""
    yield from _started(kafka_broker, "Kafka-compatible broker")


@pytest.fixture(scope="session")
def pubsub() -> Iterator[str]:
    """HOST:PORT of a Pub/Sub emulator: PUBSUB_EMULATOR_HOST's, or one started for this session."""
    yield from _started(pubsub_emulator, "Pub/Sub emulator")


@pytest.fixture(scope="session")
def firestore() -> Iterator[str]:
    """HOST:PORT of a Firestore emulator: FIRESTORE_EMULATOR_HOST's, or one started for this session."""
    yield from _started(firestore_emulator, "Firestore emulator")


@pytest.fixture(scope="session")
def google_cloud() -> Iterator[GoogleCloudEmulators]:
    """The Cloud Storage and BigQuery emulators for this session (see google_cloud_emulators)."""
    yield from _started(google_cloud_emulators, "Cloud Storage and BigQuery emulators", "`make test`")


@pytest.fixture(scope="session")
def storage(google_cloud: GoogleCloudEmulators) -> str:
    """http://HOST:PORT of the Cloud Storage emulator."""
    return google_cloud.storage


@pytest.fixture(scope="session")
def bigquery(google_cloud: GoogleCloudEmulators) -> str:
    """http://HOST:PORT of the BigQuery emulator."""
    return google_cloud.bigquery


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[str]:
    """postgresql://postgres@127.0.0.1:PORT/shop of a cluster started for this session."""
    yield from _started(postgres_server, "PostgreSQL", "CI (.ci/run)")


@pytest.fixture()
def shop_db(postgres_cluster: str) -> Iterator[str]:
    """A fresh database for one test; its replication slots are dropped, then the database."""
    with fresh_database(postgres_cluster) as url:
        yield url
