"""``streamforge cdc run|setup|workload``: change data capture from the shop's PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import psycopg
import typer
from rich.console import Console
from rich.table import Table

from streamforge.cdc.config import SCHEMA, ConfigError, DatabaseURL, DebeziumServerConfig, cdc_file
from streamforge.cdc.engine import EngineError, run_engine
from streamforge.cdc.outputs import OutputError, open_output
from streamforge.cdc.setup import missing_publication, prepare_database
from streamforge.cdc.workload import Workload, init_database
from streamforge.shutdown import stop_on_signals
from streamforge.timeutil import parse_duration

__all__ = ["app"]

app = typer.Typer(
    help="Change data capture: run the Debezium connector locally, or drive OLTP changes.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

_DATABASE_HELP = (
    "postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME of the shop database (the password here, "
    "percent-encoded, or from PGPASSWORD; never printed)."
)


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@app.command("run")
def run(
    output: str = typer.Option(
        ...,
        "--output",
        "-o",
        metavar="URL",
        help="pubsub://PROJECT, kafka://HOST:PORT or file://DIR (one JSONL file per topic).",
    ),
    database: str = typer.Option(
        ..., "--database", "-d", metavar="URL", envvar="STREAMFORGE_CDC_DATABASE", help=_DATABASE_HELP
    ),
    offsets: str = typer.Option(
        "out/cdc/offsets.dat",
        metavar="PATH|database",
        help="Offsets file: a restart resumes from it. `database`: where Debezium Server keeps them "
        "(the properties file's JDBC store, a table in the source database).",
    ),
    debezium_config: Optional[Path] = typer.Option(
        None,
        metavar="PATH",
        help="Debezium Server properties [default: the packaged streamforge/cdc/debezium/application.properties].",
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show the engine's INFO log."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress line."),
) -> None:
    """Capture the database's changes with the Debezium PostgreSQL connector (embedded, on the
    local Java) and publish them as Debezium Server's Pub/Sub sink would, until Ctrl-C or SIGTERM.

    The connector properties are those of the Debezium Server file; only the connection (and,
    unless --offsets database, the offsets store) are local. Run `streamforge cdc setup` first:
    it makes the publication, which the file does not let Debezium create. The replication
    slot is created on first start.
    """
    offsets_file = None if offsets == "database" else Path(offsets)
    try:
        config = DebeziumServerConfig.load(debezium_config)
        db = DatabaseURL.parse(database)
        if offsets_file is None and not db.password:
            raise ConfigError(
                "--offsets database: Debezium's JDBC offset store connects with a password, as Debezium "
                "Server does; give it in the URL (percent-encoded) or PGPASSWORD"
            )
        missing = missing_publication(db, config)
        if missing:
            raise ConfigError(missing)
        topics = [config.topic(t) for t in config.tables] + [config.heartbeat_topic]
        sink = open_output(output, topics, ordering=config.ordering_enabled, null_key=config.null_key)
    except (ConfigError, OutputError) as exc:
        raise _fail(str(exc)) from None
    err = Console(stderr=True)
    if not quiet:
        err.print(f"capturing {', '.join(config.tables)} from {db} -> {sink.describe()} (Ctrl-C to stop)")
    progress_every, last = 2.0, [time.monotonic()]

    def progress(stats) -> None:
        now = time.monotonic()
        if not quiet and now - last[0] >= progress_every:
            last[0] = now
            err.print(
                f"  {stats.changes:,} changes, {stats.tombstones:,} tombstones, {stats.heartbeats:,} heartbeats "
                f"in {stats.batches:,} batches",
                highlight=False,
            )

    try:
        with stop_on_signals() as stop:
            stats = run_engine(
                config,
                db,
                sink,
                offsets_file,
                stop,
                state_dir=Path(offsets).parent if offsets_file is not None else Path("out/cdc"),
                on_progress=progress,
                verbose=verbose,
            )
    except EngineError as exc:
        raise _fail(f"Debezium engine: {exc}", 1) from None
    except OutputError as exc:
        raise _fail(str(exc), 1) from None
    finally:
        sink.close()
    if not quiet:
        table = Table(title=f"CDC stopped ({stop.signal_name or 'engine ended'})")
        for column in ("topic", "messages"):
            table.add_column(column, justify="left" if column == "topic" else "right")
        for topic, count in sorted(sink.published.items()):
            table.add_row(topic, f"{count:,}")
        Console().print(table)
        err.print(
            f"{stats.changes:,} changes delivered; tombstones {stats.tombstones:,}"
            f"{' (not published: Pub/Sub)' if sink.tombstones_skipped else ''}; offsets in "
            f"{offsets_file or f'the database ({config.offset_table})'}",
            highlight=False,
        )


@app.command("setup")
def setup(
    database: str = typer.Option(
        ...,
        "--database",
        "-d",
        metavar="URL",
        envvar="STREAMFORGE_CDC_DATABASE",
        help="postgresql://OWNER@HOST:PORT/DBNAME as a user owning the tables (on Cloud SQL: "
        "postgres, through the Cloud SQL Auth Proxy); the password from PGPASSWORD.",
    ),
    user: str = typer.Option("debezium", "--user", metavar="NAME", help="The database user Debezium connects as."),
    schema: bool = typer.Option(
        False, "--schema/--no-schema", help="Also create the shop tables (schema.sql) if missing."
    ),
    debezium_config: Optional[Path] = typer.Option(
        None, metavar="PATH", help="Debezium Server properties [default: the packaged file]."
    ),
) -> None:
    """Prepare the database for Debezium, once: replication rights and grants for its user, and
    the publication of the captured tables (the properties file names both). Idempotent."""
    try:
        config = DebeziumServerConfig.load(debezium_config)
        db = DatabaseURL.parse(database)
        with db.connect() as con:
            done = prepare_database(con, config, user, schema_sql=cdc_file(SCHEMA).read_text() if schema else None)
    except (ConfigError, ValueError) as exc:
        raise _fail(str(exc)) from None
    except psycopg.Error as exc:
        raise _fail(f"{db}: {str(exc).strip()}", 1) from None
    for line in done:
        typer.echo(line)


@app.command("workload")
def workload(
    database: str = typer.Option(
        ..., "--database", "-d", metavar="URL", envvar="STREAMFORGE_CDC_DATABASE", help=_DATABASE_HELP
    ),
    seed: int = typer.Option(7, help="Random seed: the same seed on the same database gives the same changes."),
    rate: Optional[float] = typer.Option(50.0, help="Transactions per second; 0 = as fast as possible."),
    duration: Optional[str] = typer.Option(None, metavar="DURATION", help="Stop after this long, e.g. 60s, 10m."),
    operations: Optional[int] = typer.Option(None, metavar="N", help="Stop after N transactions."),
    init: bool = typer.Option(
        True,
        "--init/--no-init",
        help="Create the tables (streamforge/cdc/schema.sql) and the products and customers if missing.",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No summary."),
) -> None:
    """Drive realistic OLTP changes into the shop database: new orders with items, status
    transitions, cancellations and refunds, price changes, stock movements. Until --duration,
    --operations or Ctrl-C."""
    try:
        db = DatabaseURL.parse(database)
        seconds = parse_duration(duration).total_seconds() if duration else None
        schema = cdc_file(SCHEMA).read_text() if init else None
    except (ConfigError, ValueError) as exc:
        raise _fail(str(exc)) from None
    if rate is not None and rate < 0:
        raise _fail("--rate must not be negative")

    try:
        with db.connect() as con:
            if schema is not None and init_database(con, schema) and not quiet:
                typer.echo(f"created the shop tables in {db}", err=True)
            runner = Workload(con, seed)
            with stop_on_signals() as stop:
                stats = runner.run(rate=rate or None, operations=operations, duration_s=seconds, should_stop=stop)
    except psycopg.Error as exc:
        raise _fail(f"{db}: {str(exc).strip()}", 1) from None
    if not quiet:
        parts = ", ".join(f"{n:,} {name.replace('_', ' ')}" for name, n in sorted(stats.operations.items()))
        typer.echo(f"{stats.transactions:,} transactions: {parts}", err=True)
