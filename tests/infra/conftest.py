"""One offline deployment of the example stack for the infra tests (building the artifacts
costs a few seconds: the streamforge wheel)."""

from __future__ import annotations

import pytest

from tests.support.infra import build_artifacts, deploy_offline, stack


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory):
    return build_artifacts(tmp_path_factory.mktemp("artifacts"))


@pytest.fixture(scope="session")
def deployment(artifacts):
    return deploy_offline(*stack(artifacts))
