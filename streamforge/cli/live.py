"""``streamforge up|down|status``: the whole system live on this machine; ``streamforge dashboard``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table
from werkzeug.serving import make_server

from streamforge.config import Config
from streamforge.dashboard.app import DashboardSources, create_app
from streamforge.live.system import STATE_FILE, LiveSettings, LiveSystem, count_alerts, read_progress
from streamforge.pubsub_setup import ProjectIdError
from streamforge.services import ServerUnavailable
from streamforge.shutdown import stop_on_signals
from streamforge.warehouse_reading import WarehouseLocation

__all__ = ["dashboard", "down", "status", "up"]

WORKDIR = Path("out/live")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _state(workdir: Path) -> dict | None:
    try:
        state = json.loads((workdir / STATE_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    try:
        os.kill(state["pid"], 0)
    except ProcessLookupError:
        return None
    return state


class Transport(str, Enum):
    pubsub = "pubsub"
    kafka = "kafka"


class Warehouse(str, Enum):
    duckdb = "duckdb"
    bigquery = "bigquery"


def up(
    ctx: typer.Context,
    rate: float = typer.Option(
        200.0, "--rate", help="Simulated shop traffic, events per second (the busy-shop profile is about 200)."
    ),
    cdc: bool = typer.Option(
        True, "--cdc/--no-cdc", help="Also PostgreSQL, the Debezium capture, the OLTP workload and the CDC job."
    ),
    workdir: Path = typer.Option(
        WORKDIR, "--workdir", metavar="DIR", help="Warehouses, logs, progress, what was published."
    ),
    project: str = typer.Option("streamforge-local", "--project", help="The project id on the emulator."),
    port: int = typer.Option(8050, "--port", help="The dashboard's port on 127.0.0.1."),
    seed: int = typer.Option(42, "--seed", help="The simulator's seed."),
    duration: Optional[float] = typer.Option(
        None, "--duration", metavar="SECONDS", help="Stop by itself after this long (as Ctrl-C would)."
    ),
    detach: bool = typer.Option(
        False,
        "--detach",
        "-d",
        help="Run in the background: `streamforge status` shows it, `streamforge down` stops it.",
    ),
    transport: Transport = typer.Option(
        Transport.pubsub,
        "--transport",
        help="What carries the events and the database changes: the Pub/Sub "
        "emulator, or a local Kafka broker (Tansu). Alerts go through Pub/Sub "
        "either way.",
    ),
    warehouse: Warehouse = typer.Option(
        Warehouse.duckdb,
        "--warehouse",
        help="Where the jobs write: DuckDB files, or BigQuery (a local BigQuery emulator, the "
        "dataset and tables `pulumi up` deploys, written by streaming inserts as on Dataflow).",
    ),
) -> None:
    """Start the whole system on 127.0.0.1: the Pub/Sub emulator with the deployment's topics
    and subscriptions, PostgreSQL with the CDC capture and workload, the simulator, the
    streaming jobs (analytics and CDC), the alert dispatcher behind a push subscription, a
    webhook sink and the dashboard. Prints what runs where and live progress; Ctrl-C stops
    everything in order without losing data (docs/live.md)."""
    if _state(workdir) is not None:
        raise _fail(f"already running from {workdir} (streamforge status / streamforge down)")
    if detach:
        _detach(workdir)
        return
    config: Config = ctx.obj
    config_file = ctx.find_root().params.get("config")
    workdir.mkdir(parents=True, exist_ok=True)
    settings = LiveSettings(
        workdir.resolve(),
        project,
        rate,
        cdc,
        seed=seed,
        dashboard_port=port,
        config_file=Path(config_file).resolve() if config_file else None,
        transport=transport.value,
        warehouse_kind=warehouse.value,
    )
    err = _console(stderr=True)
    try:
        system = LiveSystem(settings, config, say=lambda line: err.print(line, highlight=False))
    except ProjectIdError as exc:
        raise _fail(str(exc)) from None
    with stop_on_signals() as stop:
        try:
            system.start()
            _print_layout(system, _console())
            started = time.monotonic()
            _watch(system, err, lambda: stop() or (duration is not None and time.monotonic() - started >= duration))
        except (ServerUnavailable, RuntimeError) as exc:  # a piece that is not installed or did not start
            err.print(f"error: {exc}", highlight=False)
            raise typer.Exit(2) from None
        finally:
            err.print("stopping (a second Ctrl-C aborts the drain)", highlight=False)
            system.stop()
    err.print(
        f"stopped. Warehouse: {settings.warehouse}; what was published: {settings.published}; "
        f"logs: {settings.workdir / 'logs'}",
        highlight=False,
    )


def _detach(workdir: Path) -> None:
    args = [a for a in sys.argv[1:] if a not in ("--detach", "-d")]
    workdir.mkdir(parents=True, exist_ok=True)
    with open(workdir / "up.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamforge", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + 300
    while _state(workdir) is None or "dashboard" not in _state(workdir)["urls"]:
        if process.poll() is not None or time.monotonic() > deadline:
            raise _fail(f"`streamforge up` did not start (see {workdir / 'up.log'})")
        time.sleep(0.5)
    typer.echo(
        f"running in the background (pid {process.pid}); dashboard {_state(workdir)['urls']['dashboard']}; "
        "`streamforge status`, `streamforge down`"
    )


def _console(stderr: bool = False) -> Console:
    """The terminal's width on a terminal; in a pipe or a log as wide as the values need, so a
    path or an address is never cut short."""
    console = Console(stderr=stderr)
    return console if console.is_terminal else Console(stderr=stderr, width=100_000)


def _print_layout(system: LiveSystem, console: Console) -> None:
    table = Table(title="StreamForge live (Ctrl-C stops everything)")
    for column in ("what", "where", "log"):
        table.add_column(column)
    for name, service in system.services.items():
        table.add_row(name, service.address or f"pid {service.process.pid}", str(service.log))
    for name, url in system.urls.items():
        table.add_row(name, url, "")
    console.print(table)


def _watch(system: LiveSystem, err: Console, should_stop) -> None:
    settings, last = system.settings, None
    while not should_stop():
        failed = system.failed()
        if failed:
            err.print(f"stopping: {'; '.join(failed)}", highlight=False)
            return
        progress = read_progress(settings)
        if last is not None and progress.at > last.at:
            span = progress.at - last.at
            rate_in = (progress.pulled.get("analytics", 0) - last.pulled.get("analytics", 0)) / span
            rate_done = (progress.acked.get("analytics", 0) - last.acked.get("analytics", 0)) / span
            lag = progress.watermark_ms.get("analytics")
            cdc = progress.watermark_ms.get("cdc")
            err.print(
                f"in {rate_in:7,.0f} ev/s | processed {rate_done:7,.0f} ev/s | total {progress.acked.get('analytics', 0):,}"
                f" | alerts delivered {count_alerts(settings.alerts_log):,}"
                f" | watermark lag {'-' if lag is None else f'{progress.at - lag / 1000:.1f} s'}"
                + (
                    ""
                    if not settings.cdc
                    else f" | CDC lag {'-' if cdc is None else f'{progress.at - cdc / 1000:.1f} s'}"
                ),
                highlight=False,
                soft_wrap=True,
            )
        last = progress
        for _ in range(10):
            if should_stop():
                return
            time.sleep(0.2)


def down(workdir: Path = typer.Option(WORKDIR, "--workdir", metavar="DIR")) -> None:
    """Stop a `streamforge up --detach` in order (as Ctrl-C does) and wait for it."""
    state = _state(workdir)
    if state is None:
        typer.echo(f"nothing is running from {workdir}")
        return
    os.kill(state["pid"], signal.SIGINT)
    deadline = time.monotonic() + 600
    while _state(workdir) is not None and time.monotonic() < deadline:
        time.sleep(0.5)
    typer.echo("stopped" if _state(workdir) is None else f"still stopping after 10 minutes (pid {state['pid']})")


def status(workdir: Path = typer.Option(WORKDIR, "--workdir", metavar="DIR")) -> None:
    """What `streamforge up` runs from WORKDIR, and its progress."""
    state = _state(workdir)
    if state is None:
        typer.echo(f"nothing is running from {workdir}")
        raise typer.Exit(1)
    console = _console()
    table = Table(title=f"StreamForge live (pid {state['pid']}, project {state['project']})")
    for column in ("what", "where", "state", "log"):
        table.add_column(column)
    for name, service in state["services"].items():
        try:
            os.kill(service["pid"], 0)
            alive = "running"
        except ProcessLookupError:
            alive = "exited"
        table.add_row(name, service["address"] or f"pid {service['pid']}", alive, service["log"])
    for name, url in state["urls"].items():
        table.add_row(name, url, "", "")
    console.print(table)
    settings = LiveSettings(workdir.resolve())
    progress = read_progress(settings)
    console.print(
        f"taken by the jobs: {progress.acked}; alerts delivered: {count_alerts(settings.alerts_log)}", highlight=False
    )


def dashboard(
    warehouse: str = typer.Option(
        "out/live/warehouse.duckdb",
        "--warehouse",
        metavar="PATH|bigquery://PROJECT.DATASET",
        help="The warehouse: a DuckDB file (read from its snapshot while a run writes it), or a "
        "BigQuery dataset (its current rows).",
    ),
    port: int = typer.Option(8050, "--port", help="Port on 127.0.0.1."),
    cdc_warehouse: Optional[str] = typer.Option(
        None, "--cdc-warehouse", metavar="PATH|bigquery://PROJECT.DATASET", help="The CDC job's warehouse."
    ),
    alerts_log: Optional[Path] = typer.Option(
        None, "--alerts-log", metavar="PATH", help="The webhook sink's --jsonl output: delivery status of the alerts."
    ),
    progress: Optional[Path] = typer.Option(
        None, "--progress", metavar="DIR", help="Where the jobs' --progress-file files are: pipeline health."
    ),
) -> None:
    """Serve the live dashboard on http://127.0.0.1:PORT/ until Ctrl-C."""
    try:
        sources = DashboardSources(
            WarehouseLocation(warehouse),
            WarehouseLocation(cdc_warehouse) if cdc_warehouse else None,
            alerts_log,
            progress,
        )
    except ValueError as exc:
        raise _fail(f"--warehouse {exc}") from None
    app = create_app(sources)
    server = make_server("127.0.0.1", port, app, threaded=True)
    typer.echo(f"dashboard on http://127.0.0.1:{port}/ (Ctrl-C to stop)", err=True)
    with stop_on_signals() as stop:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        while not stop():
            time.sleep(0.2)
        server.shutdown()
