"""What a simulation run produced, for the summary table and summary.json."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from streamforge.timeutil import format_millis

__all__ = ["SimulationStats"]


@dataclass
class SimulationStats:
    clicks: Counter[str] = field(default_factory=Counter)
    orders: Counter[str] = field(default_factory=Counter)
    fraud_cases: Counter[str] = field(default_factory=Counter)
    malformed: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    messages: int = 0  # everything written: valid events, malformed messages, duplicates
    sessions: int = 0
    new_users: int = 0
    sim_start_ms: int = 0
    sim_end_ms: int = 0
    wall_seconds: float = 0.0
    stopped_early: bool = False

    @property
    def valid_events(self) -> int:
        return sum(self.clicks.values()) + sum(self.orders.values())

    @property
    def events_per_second(self) -> float:
        return self.messages / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        """The deterministic part (no wall-clock figures): the same for the same seed."""
        return {
            "sim_start": format_millis(self.sim_start_ms),
            "sim_end": format_millis(self.sim_end_ms),
            "messages": self.messages,
            "valid_events": self.valid_events,
            "clickstream_events": _plain(self.clicks),
            "order_events": _plain(self.orders),
            "sessions": self.sessions,
            "new_users": self.new_users,
            "fraud_cases": _plain(self.fraud_cases),
            "malformed": _plain(self.malformed),
            "duplicates": self.duplicates,
            "stopped_early": self.stopped_early,
        }


def _plain(counts: Counter[str]) -> dict[str, int]:
    return {str(key): counts[key] for key in sorted(counts)}
