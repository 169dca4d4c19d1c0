"""``streamforge infra plan``: what ``pulumi up`` would create, rendered offline (infra/plan.py)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from infra.offline import ProgramError
from infra.plan import plan as render
from infra.settings import SettingsError

__all__ = ["app"]

app = typer.Typer(
    help="The Pulumi program (infra/): render what it deploys, offline.", no_args_is_help=True, rich_markup_mode=None
)


@app.callback()
def infra() -> None:
    """The Pulumi program (infra/): `pulumi up` deploys it (docs/infra.md); here, without the
    Pulumi CLI or Google Cloud, see what it would create."""


@app.command("plan")
def plan(
    stack: Path = typer.Option(
        Path("Pulumi.example.yaml"), "--stack", "-s", metavar="FILE", help="A Pulumi stack file (its config section)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the resources as JSON lines."),
) -> None:
    """Run the Pulumi program as `pulumi up` runs it (from infra/, in a fresh interpreter), against
    Pulumi's mock engine, with the stack's settings, and list
    every resource it would create: type, name, area and key settings. Needs the artifacts the
    stack points at (templates, function and batch packages; `make infra-plan` builds them).
    Secrets the stack file cannot give offline get placeholders; no value is printed."""
    try:
        _, planned = render(stack)
    except SettingsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except ProgramError as exc:
        typer.echo(
            f"error: {exc}" if exc.kind == "SettingsError" else f"error: the program failed: {exc.kind}: {exc}",
            err=True,
        )
        raise typer.Exit(2) from None
    if as_json:
        for resource in planned:
            typer.echo(json.dumps(asdict(resource)))
        return
    console = Console(width=200)
    table = Table(title=f"pulumi up with {stack}: {len(planned)} resources (offline, Pulumi mocks)")
    for column in ("area", "type", "name", "settings"):
        table.add_column(column, overflow="fold")
    for resource in sorted(planned, key=lambda r: (r.parent, r.type, r.name)):
        table.add_row(resource.parent, resource.type, resource.name, resource.settings)
    console.print(table)
    counts = Counter(r.type for r in planned)
    console.print(", ".join(f"{n} {kind}" for kind, n in counts.most_common()), highlight=False)
