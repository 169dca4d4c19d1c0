"""``streamforge pubsub create``: the deployment's topics and subscriptions on the Pub/Sub emulator."""

from __future__ import annotations

import os
from typing import Optional

import typer
from google.cloud import pubsub_v1

from streamforge.cdc.config import DebeziumServerConfig
from streamforge.pubsub_setup import ProjectIdError, check_project, create_topology
from streamforge.topology import topology

__all__ = ["app"]

app = typer.Typer(
    help="Pub/Sub for local runs: the deployment's topics and subscriptions on the emulator.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@app.callback()
def pubsub() -> None:
    """Pub/Sub for local runs (PUBSUB_EMULATOR_HOST)."""


@app.command("create")
def create(
    ctx: typer.Context,
    project: str = typer.Option("streamforge-local", "--project", "-p", help="The project id on the emulator."),
    cdc: bool = typer.Option(True, "--cdc/--no-cdc", help="Also the CDC topics and subscriptions."),
    dispatcher_url: Optional[str] = typer.Option(
        None,
        metavar="URL",
        help="Where the fraud-alerts push subscription delivers (the alert dispatcher, e.g. "
        "http://127.0.0.1:8080/); without it that subscription is not created.",
    ),
) -> None:
    """Create the topics and subscriptions the pipelines, the simulator and the functions use
    (the ones `pulumi up` deploys: streamforge/topology.py) on the emulator PUBSUB_EMULATOR_HOST
    names. What exists is left alone. Prints the names to use with `run` and `simulate`."""
    host = os.environ.get("PUBSUB_EMULATOR_HOST")
    if not host:
        typer.echo(
            "error: PUBSUB_EMULATOR_HOST is not set: start the emulator (gcloud beta emulators pubsub start "
            "--host-port=127.0.0.1:8085) and export PUBSUB_EMULATOR_HOST=127.0.0.1:8085",
            err=True,
        )
        raise typer.Exit(2)
    try:
        check_project(project)
    except ProjectIdError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    layout = topology(ctx.obj, DebeziumServerConfig.load() if cdc else None)
    endpoints = {"alert_dispatcher": dispatcher_url} if dispatcher_url else {}
    created = create_topology(pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient(), project, layout, endpoints)
    typer.echo(
        f"on the emulator at {host}, project {project}: {len(created.topics)} topics and "
        f"{len(created.subscriptions)} subscriptions created, {len(created.existing)} already there"
    )
    for name in created.skipped:
        typer.echo(f"  not created: {name} (a push subscription: give --dispatcher-url)")
    typer.echo("inputs for `streamforge run` (subscriptions) and outputs for `simulate`:")
    for subscription in layout.subscriptions:
        if subscription.id not in created.skipped:
            typer.echo(f"  pubsub://projects/{project}/subscriptions/{subscription.id}  <- {subscription.topic}")
    if cdc:
        typer.echo(f"  run cdc --input 'pubsub://projects/{project}/subscriptions/{layout.cdc_subscription_pattern}'")
    typer.echo(f"  simulate --output pubsub://{project}")
