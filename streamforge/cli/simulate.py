"""``streamforge simulate``: realistic shop traffic with labelled fraud, to files or a broker."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any, Optional

import orjson
import typer
from rich.console import Console

from streamforge.config import Config, ConfigError, SimulatorConfig, embedded_defaults
from streamforge.events import FraudPattern
from streamforge.shutdown import stop_on_signals
from streamforge.simulator.engine import RealTimeClock, Settings
from streamforge.simulator.fraud import check_injectable
from streamforge.simulator.report import SimulationProgress, render_summary
from streamforge.simulator.sinks import LABELS_FILE, SUMMARY_FILE, FileSink, LabelWriter, SinkError, TeeSink, open_sink
from streamforge.simulator.traffic import calibrate_sessions_per_second, warmup_ms
from streamforge.simulator.traffic import simulate as run_simulation
from streamforge.timeutil import format_duration, parse_duration, to_millis

__all__ = ["simulate"]

_D = embedded_defaults().simulator
#: simulator config key -> the option that overrides it, for error messages.
_OPTIONS = {
    "seed": "--seed",
    "start": "--start",
    "duration": "--duration",
    "sessions_per_second": "--sessions-per-second",
    "users": "--users",
    "fraud_rate": "--fraud-rate",
    "malformed_fraction": "--malformed",
    "duplicate_fraction": "--duplicates",
}


class Format(str, Enum):
    json = "json"
    avro = "avro"
    confluent = "confluent"


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _patterns(text: Optional[str]) -> tuple[FraudPattern, ...]:
    if text is None:
        return tuple(FraudPattern)
    names = [name.strip().upper() for name in text.split(",") if name.strip()]
    unknown = [n for n in names if n not in FraudPattern.__members__]
    if unknown or not names:
        raise _fail(
            f"--fraud-patterns: unknown pattern(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(FraudPattern)}"
        )
    return tuple(FraudPattern[n] for n in dict.fromkeys(names))


def _effective(config: Config, overrides: dict[str, Any]) -> SimulatorConfig:
    """The simulator section with command-line overrides applied (and validated)."""
    try:
        return dataclasses.replace(config.simulator, **{k: v for k, v in overrides.items() if v is not None})
    except ConfigError as exc:
        message = str(exc)
        if exc.key in _OPTIONS and overrides.get(exc.key) is not None:  # name the option, not the key
            message = message.replace(f"simulator.{exc.key}", _OPTIONS[exc.key])
        raise _fail(message) from None


def simulate(
    ctx: typer.Context,
    output: str = typer.Option(
        "file://out/simulation",
        "--output",
        "-o",
        help="file://DIR (JSONL files + fraud labels), pubsub://PROJECT, kafka://HOST:PORT, or - for stdout.",
    ),
    seed: Optional[int] = typer.Option(
        None,
        help=f"Random seed: the same seed and options give the same events. [default: {_D.seed}]",
        show_default=False,
    ),
    start: Optional[str] = typer.Option(
        None, help=f"Simulated start time (RFC 3339) or 'now'. [default: {_D.start}]", show_default=False
    ),
    duration: Optional[str] = typer.Option(
        None,
        help=f"How much time to simulate, e.g. 2h, 90m, 45s. [default: {format_duration(_D.duration)}; with --rate, until Ctrl-C]",
        show_default=False,
    ),
    rate: Optional[float] = typer.Option(
        None, help="Real-time mode: about this many events per second, stamped with the wall clock.", show_default=False
    ),
    sessions_per_second: Optional[float] = typer.Option(
        None,
        help=f"Simulated-time mode: new sessions per simulated second. [default: {_D.sessions_per_second}]",
        show_default=False,
    ),
    users: Optional[int] = typer.Option(
        None, help=f"Registered users at the start. [default: {_D.users}]", show_default=False
    ),
    fraud_rate: Optional[float] = typer.Option(
        None,
        help=f"Share of new sessions that are a fraud scenario instead. [default: {_D.fraud_rate}]",
        show_default=False,
    ),
    fraud_patterns: Optional[str] = typer.Option(
        None, help="Comma-separated patterns to inject. [default: all four]", show_default=False
    ),
    malformed: Optional[float] = typer.Option(
        None,
        help=f"Inject this many malformed messages per valid event, e.g. 0.01. [default: {_D.malformed_fraction}]",
        show_default=False,
    ),
    duplicates: Optional[float] = typer.Option(
        None,
        help=f"Re-deliver this share of events again (same event_id), e.g. 0.01. [default: {_D.duplicate_fraction}]",
        show_default=False,
    ),
    fmt: Format = typer.Option(
        Format.json, "--format", help="Message encoding for kafka:// and pubsub:// (files and stdout are JSON)."
    ),
    labels: Optional[Path] = typer.Option(
        None,
        help="Write fraud ground truth (JSONL) here. [default: DIR/fraud_labels.jsonl for file://]",
        show_default=False,
    ),
    record: Optional[Path] = typer.Option(
        None,
        metavar="DIR",
        help="Also write every message sent to DIR/clickstream.jsonl and DIR/orders.jsonl (JSON "
        "lines, malformed ones as sent): what a live run published, to check its results.",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no summary."),
) -> None:
    """Generate realistic clickstream and order traffic with labelled fraud cases.

    Shoppers browse, fill carts and buy following a session state machine; orders go
    through CREATED, PAID or PAYMENT_FAILED, and later CANCELLED, SHIPPED, DELIVERED.
    A share of sessions are fraud scenarios (RAPID_ORDERS, HIGH_VALUE_FIRST_ORDER,
    LOCATION_ANOMALY, CARD_TESTING), each recorded as a ground-truth label.

    Two clocks: by default simulated time runs as fast as possible from --start for
    --duration; with --rate, events are stamped and sent in real time until --duration
    or Ctrl-C.
    """
    config: Config = ctx.obj
    realtime = rate is not None
    if realtime and rate <= 0:
        raise _fail(f"--rate must be positive, got {rate}")
    if realtime and start not in (None, "now"):
        raise _fail("--start cannot be set with --rate: real-time traffic starts now")
    try:
        span = parse_duration(duration) if duration is not None else None
    except ValueError as exc:
        raise _fail(f"--duration: {exc}") from None
    sim = _effective(
        config,
        {
            "seed": seed,
            "start": start,
            "sessions_per_second": sessions_per_second,
            "users": users,
            "fraud_rate": fraud_rate,
            "malformed_fraction": malformed,
            "duplicate_fraction": duplicates,
        },
    )
    if span is None and not realtime:
        span = sim.duration
    patterns = _patterns(fraud_patterns)
    problems = check_injectable(config.fraud, patterns)
    if problems:
        raise _fail("; ".join(problems))
    start_at = None if realtime else sim.start_time()
    settings = Settings(
        seed=sim.seed,
        start_ms=to_millis(start_at or datetime.now(timezone.utc)),
        sessions_per_second=sim.sessions_per_second,
        users=sim.users,
        currency=sim.currency,
        fraud_rate=sim.fraud_rate,
        fraud_patterns=patterns,
        rules=config.fraud,
        session_gap_ms=int(config.sessions.gap.total_seconds() * 1000),
        malformed_fraction=sim.malformed_fraction,
        duplicate_fraction=sim.duplicate_fraction,
    )
    if realtime:
        settings = dataclasses.replace(
            settings,
            sessions_per_second=calibrate_sessions_per_second(settings, rate, fmt.value),
            warmup_ms=warmup_ms(rate),
        )
    duration_ms = None if span is None else span.total_seconds() * 1000
    until_ms = float("inf") if duration_ms is None else settings.start_ms + duration_ms

    console = Console(stderr=True, quiet=quiet)
    try:
        sink = open_sink(output, config.topics, fmt.value, follow=realtime)  # real time: readable as it goes
        if record is not None:
            sink = TeeSink(sink, FileSink(record, follow=realtime))
        labels_path = labels or (sink.directory / LABELS_FILE if isinstance(sink, FileSink) else None)
        label_writer = LabelWriter(labels_path) if labels_path else None
    except SinkError as exc:
        raise _fail(str(exc), 1) from None
    with stop_on_signals() as stop:
        clock = RealTimeClock(settings.start_ms, stop) if realtime else None
        try:
            with SimulationProgress(console, settings.start_ms, duration_ms, enabled=console.is_terminal) as progress:
                stats = run_simulation(
                    settings,
                    sink,
                    until_ms=until_ms,
                    clock=clock,
                    should_stop=stop,
                    on_progress=progress.update,
                    on_label=label_writer,
                )
        finally:
            if label_writer is not None:
                label_writer.close()
            try:
                sink.close()  # waits for every delivery
            except SinkError as exc:
                raise _fail(str(exc), 1) from None
    if isinstance(sink, FileSink):
        (sink.directory / SUMMARY_FILE).write_bytes(orjson.dumps(stats.to_json(), option=orjson.OPT_INDENT_2) + b"\n")
    extra = {"fraud labels": str(labels_path)} if labels_path else {}
    if realtime:
        extra["target rate"] = f"{rate:,.0f} events/s"
    render_summary(console, stats, sink.describe(), extra)
    if stop() and not realtime:
        raise typer.Exit(130)
