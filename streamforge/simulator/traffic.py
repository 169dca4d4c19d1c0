"""Wiring: session arrivals, a run from settings to stats, and rate calibration."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator

from streamforge.simulator import fraud, shoppers
from streamforge.simulator.engine import RealTimeClock, Settings, Simulation, Sink
from streamforge.simulator.profile import DEFAULT_PROFILE, TrafficProfile
from streamforge.simulator.sinks import NullSink
from streamforge.simulator.stats import SimulationStats

__all__ = ["WARMUP_MS", "arrivals", "calibrate_sessions_per_second", "simulate", "warmup_ms"]

_CALIBRATION_MS = 20 * 60_000
#: Traffic reaches a steady rate about five simulated minutes after a cold start (visits
#: last minutes); real-time runs start after a warm-up instead of ramping up.
WARMUP_MS = 5 * 60_000
#: ... but a warm-up plans at most about this many events (about five seconds of work), so
#: rates above ~3,300 events/s get a shorter one and reach their rate a little later.
_WARMUP_EVENTS = 1_000_000


def arrivals(sim: Simulation) -> Iterator[int]:
    """New sessions as a Poisson process; a ``fraud_rate`` share of them are fraud scenarios.

    Yields each arrival time (in whole milliseconds; busy shops have several arrivals in
    one); resumed at that time, it plans what arrives.
    """
    settings, rng = sim.settings, sim.rng
    mean_gap_ms = 1000.0 / settings.sessions_per_second
    patterns = settings.fraud_patterns
    fraud_rate = settings.fraud_rate if patterns else 0.0
    clock = float(sim.now)
    while True:
        clock += rng.expovariate(1.0) * mean_gap_ms
        at = int(clock)
        yield at
        if at >= settings.start_ms and rng.random() < fraud_rate:  # no fraud during a warm-up
            fraud.plan_scenario(sim, patterns[rng.randrange(len(patterns))])
        else:
            shoppers.browsing_session(sim, sim.borrow_user())


def simulate(
    settings: Settings,
    sink: Sink,
    *,
    until_ms: float,
    clock: RealTimeClock | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    on_progress: Callable[[SimulationStats, int], None] | None = None,
    on_label: Callable[[dict[str, Any]], None] | None = None,
    profile: TrafficProfile = DEFAULT_PROFILE,
) -> SimulationStats:
    sim = Simulation(settings, sink, profile=profile, on_label=on_label)
    return sim.run(until_ms, arrivals(sim), clock=clock, should_stop=should_stop, on_progress=on_progress)


def warmup_ms(events_per_second: float) -> int:
    """How long a real-time run at ``events_per_second`` warms up before writing."""
    return int(min(WARMUP_MS, _WARMUP_EVENTS / events_per_second * 1000))


def calibrate_sessions_per_second(settings: Settings, events_per_second: float, output_format: str = "json") -> float:
    """The session arrival rate that yields ``events_per_second`` messages in steady state.

    Measured on a simulated probe with the same settings (faults included): a warm-up, then
    ``_CALIBRATION_MS`` of counted traffic.
    """
    probe_rate = 10.0  # about 12,000 visits: a rate within about 1%
    probe = dataclasses.replace(settings, sessions_per_second=probe_rate, warmup_ms=WARMUP_MS)
    stats = simulate(probe, NullSink(output_format), until_ms=probe.start_ms + _CALIBRATION_MS)
    messages_per_second = stats.messages / (_CALIBRATION_MS / 1000)
    return events_per_second * probe_rate / max(messages_per_second, 1e-9)
