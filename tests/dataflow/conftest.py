"""The simulated Dataflow image's environment, made once for the tests that need it (about a minute)."""

from __future__ import annotations

import pytest

from tests.support.worker import Worker


@pytest.fixture(scope="session")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Worker:
    return Worker.from_wheelhouse(tmp_path_factory.mktemp("worker"))
