"""Fixtures shared by the whole suite: simulator runs and local servers."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.support.cli import simulate_to
from tests.support.servers import ServerUnavailable, kafka_broker, pubsub_emulator


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
    return simulate_to(tmp_path_factory.mktemp("faulty-run"), "--duration", "1h", "--malformed", "0.02", "--duplicates", "0.02")


@pytest.fixture(scope="session")
def kafka() -> Iterator[str]:
    """HOST:PORT of a Kafka-compatible broker started for this test session."""
    try:
        with kafka_broker() as bootstrap:
            yield bootstrap
    except ServerUnavailable as exc:
        pytest.skip(f"no Kafka-compatible broker: {exc}")


@pytest.fixture(scope="session")
def pubsub() -> Iterator[str]:
    """HOST:PORT of a Pub/Sub emulator: PUBSUB_EMULATOR_HOST's, or one started for this session."""
    try:
        with pubsub_emulator() as host:
            yield host
    except ServerUnavailable as exc:
        pytest.skip(f"no Pub/Sub emulator: {exc}")
