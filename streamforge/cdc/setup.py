"""Preparing the shop database for Debezium: the SQL that Pulumi's Google provider cannot run.

Run once (``streamforge cdc setup``) as a user that owns the tables (on Cloud SQL: ``postgres``,
through the Cloud SQL Auth Proxy; docs/infra.md). Every step is idempotent:

- the shop schema (``schema.sql``), if asked and the tables are missing;
- the Debezium user gets ``REPLICATION`` (a logical replication connection), ``SELECT`` on the
  captured tables (the initial snapshot) and ``CREATE`` on schema public (the JDBC offset
  store creates its table there);
- the heartbeat table the properties' ``heartbeat.action.query`` updates (one row), which the
  user may update;
- the publication the properties file names, for exactly the captured tables and the heartbeat
  table, created or set to them (the file disables Debezium's auto-creation, which would need
  the user to own the tables).

Debezium creates the replication slot itself on its first start.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from streamforge.cdc.config import DebeziumServerConfig
from streamforge.cdc.workload import init_database

__all__ = ["missing_publication", "prepare_database"]


def prepare_database(
    con: Any, debezium: DebeziumServerConfig, user: str, *, schema_sql: str | None = None
) -> list[str]:
    """Prepares the database ``con`` is connected to; returns what it did, one line per step."""
    done: list[str] = []
    if con.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone() is None:
        raise ValueError(f"no database user {user!r}: create it first (the infrastructure program does, on Cloud SQL)")
    if schema_sql is not None and init_database(con, schema_sql):
        done.append("created the shop tables (schema.sql)")
    role = sql.Identifier(user)
    tables = [tuple(t.split(".", 1)) for t in debezium.tables]
    listed = sql.SQL(", ").join(sql.Identifier(schema, table) for schema, table in tables)
    missing = [
        f"{s}.{t}" for s, t in tables if con.execute("SELECT to_regclass(%s)", (f"{s}.{t}",)).fetchone()[0] is None
    ]
    if missing:
        raise ValueError(f"the captured tables {', '.join(missing)} do not exist: apply schema.sql (--schema)")
    if not con.execute("SELECT rolreplication FROM pg_roles WHERE rolname = %s", (user,)).fetchone()[0]:
        con.execute(sql.SQL("ALTER ROLE {} WITH REPLICATION").format(role))
        done.append(f"{user} may open replication connections")
    con.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(listed, role))
    con.execute(sql.SQL("GRANT USAGE, CREATE ON SCHEMA public TO {}").format(role))
    done.append(f"{user} may read {len(tables)} tables and keep its offsets in schema public")
    published = list(tables)
    heartbeat = debezium.heartbeat_table
    if heartbeat is not None:
        schema, table = heartbeat.split(".", 1)
        name = sql.Identifier(schema, table)
        con.execute(
            sql.SQL("CREATE TABLE IF NOT EXISTS {} (id integer PRIMARY KEY, beat_at timestamptz NOT NULL)").format(name)
        )
        con.execute(sql.SQL("INSERT INTO {} VALUES (1, now()) ON CONFLICT (id) DO NOTHING").format(name))
        con.execute(sql.SQL("GRANT SELECT, UPDATE ON {} TO {}").format(name, role))
        published.append((schema, table))
        done.append(f"{user} may update the heartbeat table {heartbeat}")
    listed = sql.SQL(", ").join(sql.Identifier(schema, table) for schema, table in published)
    publication = sql.Identifier(debezium.publication_name)
    exists = con.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (debezium.publication_name,)).fetchone()
    con.execute(
        sql.SQL("ALTER PUBLICATION {} SET TABLE {}" if exists else "CREATE PUBLICATION {} FOR TABLE {}").format(
            publication, listed
        )
    )
    done.append(
        f"publication {debezium.publication_name} {'set to' if exists else 'created for'} "
        f"{', '.join(f'{s}.{t}' for s, t in published)}"
    )
    con.commit()
    return done


def missing_publication(database: Any, debezium: DebeziumServerConfig) -> str | None:
    """Why Debezium could not start on ``database`` (a DatabaseURL) for want of its publication,
    or None. The properties disable Debezium's own auto-creation: `cdc setup` makes it."""
    if debezium.properties.get("debezium.source.publication.autocreate.mode", "all_tables") != "disabled":
        return None
    try:
        with database.connect() as con:
            found = con.execute(
                "SELECT 1 FROM pg_publication WHERE pubname = %s", (debezium.publication_name,)
            ).fetchone()
    except psycopg.Error:  # the connector reports a connection problem itself, in full
        return None
    if found:
        return None
    return (
        f"{database} has no publication {debezium.publication_name}: run `streamforge cdc setup -d URL --user USER` "
        "first, as the tables' owner (the properties file leaves creating it to the owner)"
    )
