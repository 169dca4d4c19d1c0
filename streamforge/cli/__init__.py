"""``streamforge``: the single command-line entry point.

Commands are thin: they parse, call a library (``streamforge`` itself, ``beam_pipelines``,
``batch``, ``infra``), and print. Each command's module imports its library at the top and is loaded
only when the command runs, so ``streamforge simulate`` does not pay for importing Beam, and
a command whose extra is not installed says which one to install.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import typer
from typer.core import TyperCommand, TyperGroup

from streamforge import __version__
from streamforge.config import CONFIG_ENV_VAR, ConfigError, load_config
from streamforge.extras import missing

__all__ = ["COMMANDS", "app", "main"]


@dataclass(frozen=True)
class Command:
    module: str
    attribute: str  # a Typer app (a group of commands) or a function (one command)
    extra: str | None = None  # what it needs: `pip install 'streamforge[EXTRA]'` (None: the core)
    settings: dict[str, Any] = field(default_factory=dict)  # click context settings

    def load(self, name: str) -> TyperCommand | TyperGroup:
        absent = missing(self.extra) if self.extra else []
        if absent:
            return _missing(name, self.extra, absent)
        target = getattr(importlib.import_module(self.module), self.attribute)
        if isinstance(target, typer.Typer):
            command = typer.main.get_command(target)
            command.name = name
            return command
        return _single(name, target, self.settings)


def _single(name: str, function: Any, settings: dict[str, Any], **options: Any) -> TyperCommand:
    """``function`` as the command ``name`` (Typer's own command class: Typer carries its own
    copy of click, so the command is built through Typer, never with click directly)."""
    single = typer.Typer(add_completion=False, rich_markup_mode=None)
    single.command(name, context_settings=settings, **options)(function)
    command = typer.main.get_command(single)
    command.name = name
    return command


def _missing(name: str, extra: str, absent: list[str]) -> TyperCommand:
    """Stands for a command whose extra is not installed: listed as such, and says what to install."""

    def explain() -> None:
        typer.echo(
            f"error: `streamforge {name}` needs {', '.join(absent)}, which "
            f"{'is' if len(absent) == 1 else 'are'} not installed: pip install 'streamforge[{extra}]'",
            err=True,
        )
        raise typer.Exit(2)

    return _single(
        name,
        explain,
        {"ignore_unknown_options": True, "allow_extra_args": True},
        help=f"Not installed: pip install 'streamforge[{extra}]'.",
        short_help=f"not installed: streamforge[{extra}]",
    )


COMMANDS = {
    "simulate": Command("streamforge.cli.simulate", "simulate"),
    "schemas": Command("streamforge.cli.schemas", "app"),
    "run": Command(
        "streamforge.cli.run", "run", "pipelines", {"allow_extra_args": True, "ignore_unknown_options": True}
    ),
    "report": Command("streamforge.cli.report", "report", "warehouse"),
    "warehouse": Command("streamforge.cli.warehouse", "app", "bigquery"),
    "dataflow": Command("streamforge.cli.dataflow", "app", "dataflow"),
    "cdc": Command("streamforge.cli.cdc", "app", "cdc"),
    "functions": Command("streamforge.cli.functions", "app", "functions"),
    "webhook-sink": Command("streamforge.cli.functions", "webhook_sink"),  # the standard library serves it
    "batch": Command("streamforge.cli.batch", "app", "batch"),
    "infra": Command("streamforge.cli.infra", "app", "infra"),
    "pubsub": Command("streamforge.cli.pubsub", "app", "pubsub"),
    "up": Command("streamforge.cli.live", "up", "live", {"allow_extra_args": False}),
    "down": Command("streamforge.cli.live", "down", "live"),
    "status": Command("streamforge.cli.live", "status", "live"),
    "dashboard": Command("streamforge.cli.live", "dashboard", "live"),
}


class _Commands(TyperGroup):
    """The root group: commands from ``COMMANDS``, each loaded when used."""

    def list_commands(self, ctx: typer.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: typer.Context, name: str) -> TyperCommand | TyperGroup | None:
        command = COMMANDS.get(name)
        return None if command is None else command.load(name)


app = typer.Typer(
    name="streamforge",
    cls=_Commands,
    help=(
        "StreamForge: real-time e-commerce analytics on Google Cloud.\n\n"
        "Generate shop traffic, inspect the event schemas, capture the shop database's changes "
        "(CDC), run the Beam jobs (sessions, revenue, fraud, cdc) locally or on Dataflow, build and "
        "control their Dataflow image, templates and jobs, serve or package the Cloud Functions "
        "(alert dispatcher, ingest), run the daily PySpark batch, and render the Pulumi deployment."
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
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    try:
        ctx.obj = load_config(config)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def main() -> None:
    app()
