"""``streamforge warehouse create``: a BigQuery dataset with the tables and views `pulumi up` deploys."""

from __future__ import annotations

from typing import Optional

import typer

from streamforge.bigquery_warehouse import BigQueryWarehouse, WarehouseDrift, create_warehouse, emulator_host
from streamforge.cdc.config import DebeziumServerConfig
from streamforge.warehouse_tables import captured_tables, warehouse_tables

__all__ = ["app"]

app = typer.Typer(
    help="The BigQuery warehouse: its dataset, tables and views, as the deployment declares them.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@app.callback()
def warehouse() -> None:
    """The BigQuery warehouse (on Google Cloud, or the emulator BIGQUERY_EMULATOR_HOST names)."""


@app.command("create")
def create(
    ctx: typer.Context,
    url: str = typer.Argument(..., metavar="bigquery://PROJECT.DATASET", help="The dataset to create or check."),
    cdc: bool = typer.Option(True, "--cdc/--no-cdc", help="Also the CDC tables and replica views."),
    location: Optional[str] = typer.Option(None, metavar="LOCATION", help="Where a new dataset lives, e.g. EU."),
) -> None:
    """Create the dataset and every table and view the jobs write and read (the ones `pulumi up`
    deploys: streamforge/warehouse_tables.py), where missing. A table that exists with other
    columns than declared is reported, not changed (exit 1). Uses Google's credentials, or the
    emulator BIGQUERY_EMULATOR_HOST names, anonymously."""
    try:
        target = BigQueryWarehouse.parse(url)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    specs = warehouse_tables(ctx.obj, captured_tables(DebeziumServerConfig.load() if cdc else None))
    try:
        created = create_warehouse(target, specs, location=location)
    except WarehouseDrift as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    where = f" (the emulator at {emulator_host()})" if emulator_host() else ""
    typer.echo(
        f"{target.url}{where}: {len(specs)} tables and views declared, {len(created)} created"
        + (f": {', '.join(created)}" if created else "; everything was there and matches its declaration")
    )
