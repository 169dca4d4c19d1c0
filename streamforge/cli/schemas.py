"""``streamforge schemas``: inspect the event schemas and guard their evolution."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from streamforge.schemas import SCHEMA_DIR, UnknownSchema, registry
from streamforge.schemas.governance import SchemaGovernanceError, check, publish

__all__ = ["app"]

app = typer.Typer(
    help="Inspect the versioned Avro event schemas, their BigQuery tables, and check compatibility.",
    no_args_is_help=True,
)


@app.command("list")
def list_schemas() -> None:
    """Every subject and version, with its Confluent schema id and BigQuery table."""
    table = Table(show_edge=False)
    for column in ("subject", "version", "schema id", "fields", "BigQuery table", "partitioned by", "clustered by"):
        table.add_column(column, no_wrap=True)
    for schema in registry():
        bq = schema.bigquery
        table.add_row(
            schema.subject,
            str(schema.version),
            str(schema.schema_id),
            str(len(schema.field_names())),
            bq.table if bq else "-",
            (bq.partition_field or "-") if bq else "-",
            ", ".join(bq.clustering) if bq else "-",
        )
    console = Console()
    if not console.is_terminal:  # piped or redirected: never cut names to fit 80 columns
        console = Console(width=200)
    console.print(table)


@app.command("show")
def show(
    subject: str = typer.Argument(..., help="Schema subject, e.g. order_event."),
    version: Optional[int] = typer.Option(None, help="Version [default: latest]."),
    bigquery: bool = typer.Option(
        False, "--bigquery", help="Print the derived BigQuery schema (bq/Terraform JSON) instead."
    ),
) -> None:
    """Print a schema as Avro JSON, or the BigQuery table schema derived from it."""
    try:
        schema = registry().get(subject, version)
    except UnknownSchema as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if bigquery:
        if schema.bigquery is None:
            typer.echo(f"error: {schema.label} has no BigQuery table", err=True)
            raise typer.Exit(2)
        typer.echo(json.dumps(schema.bigquery.schema_json(), indent=2))
    else:
        typer.echo(json.dumps(schema.definition, indent=2))


@app.command("check")
def check_command(
    directory: Path = typer.Option(
        SCHEMA_DIR, "--dir", help="Folder of <subject>.v<N>.avsc files.", show_default=False
    ),
) -> None:
    """Fail if a published schema changed or two versions of a subject are incompatible.

    Versions must be FULL_TRANSITIVE compatible: each reads every other's data.
    """
    problems = check(directory)
    for problem in problems:
        typer.echo(f"✗ {problem}", err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"✓ {sum(1 for _ in registry())} schema versions published and compatible")


@app.command("publish")
def publish_command(
    directory: Path = typer.Option(
        SCHEMA_DIR, "--dir", help="Folder of <subject>.v<N>.avsc files.", show_default=False
    ),
) -> None:
    """Pin new schema versions in published.json (refused if incompatible)."""
    try:
        added = publish(directory)
    except SchemaGovernanceError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo("published: " + (", ".join(added) if added else "nothing new"))
