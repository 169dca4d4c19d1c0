"""Progress bar and end-of-run summary for ``streamforge simulate`` (on stderr)."""

from __future__ import annotations

from collections import Counter
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from streamforge.simulator.stats import SimulationStats
from streamforge.timeutil import format_millis

__all__ = ["SimulationProgress", "render_summary"]


class SimulationProgress:
    """A progress bar over simulated time; silent when stderr is not a terminal."""

    def __init__(self, console: Console, start_ms: int, duration_ms: float | None, *, enabled: bool):
        self._start_ms = start_ms
        total = None if duration_ms is None else duration_ms / 1000
        self._progress = Progress(
            TextColumn("[bold]simulating[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("s simulated"),
            TextColumn("{task.fields[messages]:,} messages"),
            TimeElapsedColumn(),
            console=console,
            disable=not enabled,
            transient=False,
        )
        self._task = self._progress.add_task("simulate", total=total, messages=0)

    def update(self, stats: SimulationStats, now_ms: int) -> None:
        self._progress.update(self._task, completed=(now_ms - self._start_ms) // 1000, messages=stats.messages)

    def __enter__(self) -> SimulationProgress:
        self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._progress.stop()


def _counter_table(title: str, counts: Counter[str], order: tuple[str, ...] = ()) -> Table:
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("", style="cyan")
    table.add_column("count", justify="right")
    table.add_column("share", justify="right")
    total = sum(counts.values())
    keys = [k for k in order if k in counts] + sorted(k for k in counts if k not in order)
    for key in keys:
        table.add_row(str(key), f"{counts[key]:,}", f"{counts[key] / total:.1%}" if total else "-")
    table.add_row("[bold]total[/]", f"[bold]{total:,}[/]", "")
    return table


def render_summary(
    console: Console, stats: SimulationStats, destination: str, extra: dict[str, Any] | None = None
) -> None:
    overview = Table(title="Simulation summary", title_justify="left", show_header=False, show_edge=False)
    overview.add_column(style="cyan")
    overview.add_column()
    overview.add_row("simulated time", f"{format_millis(stats.sim_start_ms)} .. {format_millis(stats.sim_end_ms)}")
    overview.add_row("wall time", f"{stats.wall_seconds:.2f} s" + (" (stopped early)" if stats.stopped_early else ""))
    overview.add_row("messages written", f"{stats.messages:,}")
    overview.add_row("throughput", f"{stats.events_per_second:,.0f} events/s")
    overview.add_row("sessions", f"{stats.sessions:,} ({stats.new_users:,} new users)")
    overview.add_row("output", destination)
    for key, value in (extra or {}).items():
        overview.add_row(key, str(value))
    console.print(overview)
    console.print()
    console.print(
        _counter_table(
            "Clickstream events by type",
            stats.clicks,
            ("page_view", "product_view", "add_to_cart", "remove_from_cart", "checkout_start", "purchase"),
        )
    )
    console.print()
    console.print(
        _counter_table(
            "Order events by status",
            stats.orders,
            ("CREATED", "PAID", "PAYMENT_FAILED", "CANCELLED", "SHIPPED", "DELIVERED"),
        )
    )
    console.print()
    console.print(_counter_table("Injected fraud cases by pattern", stats.fraud_cases))
    if stats.malformed or stats.duplicates:
        faults = Counter(stats.malformed)
        console.print()
        console.print(_counter_table("Injected malformed messages by kind", faults))
        console.print(f"[cyan]exact duplicates (same event_id)[/] {stats.duplicates:,}")
