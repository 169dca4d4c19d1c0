"""`streamforge cdc setup` against a real PostgreSQL: it gives the Debezium user exactly what the
connector needs, and the connector then captures as that user (no superuser)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import psycopg
import pytest

from streamforge.cdc.config import DebeziumServerConfig
from tests.support.capture import as_user, new_role, start_capture, stop_capture
from tests.support.cli import run_cli

pytestmark = pytest.mark.postgres


def test_setup_prepares_the_user_and_the_publication_and_is_idempotent(shop_db: str) -> None:
    user = new_role(shop_db)
    first = run_cli("cdc", "setup", "-d", shop_db, "--user", user, "--schema")
    assert first.exit_code == 0, first.output
    assert first.output.splitlines()[0] == "created the shop tables (schema.sql)"
    again = run_cli(
        "cdc", "setup", "-d", shop_db, "--user", user, "--schema"
    )  # nothing new to create; the rest is re-applied
    assert again.exit_code == 0 and "created the shop tables" not in again.output and "set to" in again.output
    debezium = DebeziumServerConfig.load()
    with psycopg.connect(shop_db) as con:
        assert con.execute("SELECT rolreplication FROM pg_roles WHERE rolname = %s", (user,)).fetchone() == (True,)
        published = {
            f"{s}.{t}"
            for s, t in con.execute(
                "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s",
                (debezium.publication_name,),
            )
        }
    assert published == {*debezium.tables, debezium.heartbeat_table}
    with psycopg.connect(as_user(shop_db, user)) as con:
        assert con.execute("SELECT count(*) FROM products").fetchone() == (0,)


def test_setup_names_what_is_missing(shop_db: str) -> None:
    no_user = run_cli("cdc", "setup", "-d", shop_db, "--user", "nobody", "--schema")
    assert no_user.exit_code == 2 and "no database user 'nobody'" in no_user.output
    no_tables = run_cli("cdc", "setup", "-d", shop_db, "--user", new_role(shop_db))
    assert no_tables.exit_code == 2 and "public.products" in no_tables.output and "--schema" in no_tables.output


@pytest.mark.slow
def test_the_connector_captures_as_the_prepared_user(shop_db: str, tmp_path: Path) -> None:
    user = new_role(shop_db)
    assert run_cli("cdc", "setup", "-d", shop_db, "--user", user, "--schema").exit_code == 0
    with psycopg.connect(shop_db) as con:
        con.execute(
            "INSERT INTO customers (external_id, email, full_name, country) VALUES ('U7', 'u7@example.com', 'Bo', 'SE')"
        )
    capture = start_capture(as_user(shop_db, user), f"file://{tmp_path / 'out'}", tmp_path / "offsets.dat", owner=False)
    try:
        changes = tmp_path / "out" / "cdc.public.customers.jsonl"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not (changes.exists() and b'"U7"' in changes.read_bytes()):
            assert capture.poll() is None, capture.stderr.read()
            time.sleep(0.5)
    finally:
        code = stop_capture(capture)
    assert code == 0, capture.stderr.read()
    (event,) = [json.loads(line) for line in changes.read_text().splitlines() if '"U7"' in line]
    assert event["op"] == "r" and event["after"]["external_id"] == "U7"
