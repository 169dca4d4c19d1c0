"""``streamforge``: the single command-line entry point."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from streamforge import __version__
from streamforge.cli import batch as batch_cli
from streamforge.cli import cdc as cdc_cli
from streamforge.cli import functions as functions_cli
from streamforge.cli import report as report_cli
from streamforge.cli import run as run_cli
from streamforge.cli import schemas as schemas_cli
from streamforge.cli import simulate as simulate_cli
from streamforge.config import CONFIG_ENV_VAR, ConfigError, load_config

__all__ = ["app", "main"]

app = typer.Typer(
    name="streamforge",
    help=(
        "StreamForge: real-time e-commerce analytics on Google Cloud.\n\n"
        "Generate shop traffic, inspect the event schemas, capture the shop database's changes "
        "(CDC), run the Beam jobs (sessions, revenue, fraud, cdc) locally or on Dataflow, serve "
        "or package the Cloud Functions (alert dispatcher, ingest), and run the daily PySpark batch."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"streamforge {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config: Optional[Path] = typer.Option(
        None,
        "--config",
        envvar=CONFIG_ENV_VAR,
        help="TOML file overriding the embedded defaults (topics, session gap, fraud rules, simulator).",
        show_default=False,
    ),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    try:
        ctx.obj = load_config(config)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


app.command("simulate")(simulate_cli.simulate)
app.command("run", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(run_cli.run)
app.command("report")(report_cli.report)
app.add_typer(schemas_cli.app, name="schemas")
app.add_typer(cdc_cli.app, name="cdc")
app.add_typer(functions_cli.app, name="functions")
app.add_typer(batch_cli.app, name="batch")
app.command("webhook-sink")(functions_cli.webhook_sink)


def main() -> None:
    app()
