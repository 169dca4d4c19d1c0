"""A PostgreSQL cluster for the CDC tests (wal_level=logical, on 127.0.0.1), a database per test."""

from __future__ import annotations

import os
import uuid
from typing import Iterator

import pytest

from tests.support.servers import ServerUnavailable, postgres_server


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[str]:
    """postgresql://postgres@127.0.0.1:PORT/shop of a cluster started for this session.

    Skipped when the server binaries are missing, except in CI, where .ci/run installs them."""
    try:
        with postgres_server() as url:
            yield url
    except ServerUnavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must install PostgreSQL (.ci/run): {exc}")
        pytest.skip(f"no PostgreSQL: {exc}")


@pytest.fixture()
def shop_db(postgres_cluster: str) -> Iterator[str]:
    """A fresh database for one test; its replication slots are dropped, then the database."""
    import psycopg

    admin_url = postgres_cluster.rsplit("/", 1)[0] + "/postgres"
    name = f"shop_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{admin_url.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            for (slot,) in admin.execute(
                "SELECT slot_name FROM pg_replication_slots WHERE database = %s", (name,)
            ).fetchall():
                admin.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            assert admin.execute("SELECT count(*) FROM pg_replication_slots").fetchone()[0] == 0
