"""Session metrics as a mergeable aggregate: plain Python, no Beam.

Session windows merge as events arrive, so the sessions job combines events with a
CombineFn whose accumulator is a ``SessionAggregate``: it adds events one by one, merges
with another aggregate of the same user in any order, and yields the ``user_sessions`` row.
Merging is associative and commutative, so the result does not depend on how the runner
splits or merges the work.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Mapping

from streamforge.events import EventType
from streamforge.timeutil import millis_to_datetime, to_millis

__all__ = ["SessionAggregate", "UserSessions", "session_id"]

_COUNTED = {
    EventType.PAGE_VIEW: "page_views",
    EventType.PRODUCT_VIEW: "product_views",
    EventType.ADD_TO_CART: "add_to_cart_count",
    EventType.REMOVE_FROM_CART: "remove_from_cart_count",
    EventType.CHECKOUT_START: "checkout_count",
    EventType.PURCHASE: "purchase_count",
}


_CENT = Decimal("0.01")


def session_id(user_id: str, start_ms: int) -> str:
    """Deterministic from user and start, so a recomputed session keeps its id."""
    return "s_" + hashlib.sha256(f"{user_id}|{start_ms}".encode()).hexdigest()[:30]


@dataclass(slots=True)
class SessionAggregate:
    """Everything a session row needs, from any subset of the session's events."""

    user_id: str = ""
    event_count: int = 0
    start_ms: int = 0
    end_ms: int = 0
    first_key: tuple[int, str] = (0, "")  # (event time, event id) of the earliest event
    device_type: str = ""
    geo_region: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    revenue_cents: int = 0  # integer cents: cheap to add and to pickle (accumulators cross the shuffle)
    category_views: dict[str, int] = field(default_factory=dict)

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as the constructor's arguments: a third of the default's cost (accumulators
        cross the shuffle pickled)."""
        return SessionAggregate, (
            self.user_id,
            self.event_count,
            self.start_ms,
            self.end_ms,
            self.first_key,
            self.device_type,
            self.geo_region,
            self.counts,
            self.revenue_cents,
            self.category_views,
        )

    def add(self, event: Mapping[str, Any], at_ms: int | None = None) -> SessionAggregate:
        """Add one validated clickstream event (Python form); ``at_ms``: its event time, if known."""
        if at_ms is None:
            at_ms = to_millis(event["event_time"])
        self._span(
            event["user_id"], at_ms, at_ms, (at_ms, event["event_id"]), event["device_type"], event["geo_region"], 1
        )
        kind = event["event_type"]
        name = _COUNTED[kind]
        self.counts[name] = self.counts.get(name, 0) + 1
        if kind == EventType.PURCHASE:
            self.revenue_cents += int(event["price"] * 100)  # exact: the schema allows two decimal places
        elif kind == EventType.PRODUCT_VIEW:
            self.category_views[event["category"]] = self.category_views.get(event["category"], 0) + 1
        return self

    def merge(self, other: SessionAggregate) -> SessionAggregate:
        """Fold ``other`` (the same user's) into this aggregate."""
        if other.event_count == 0:
            return self
        self._span(
            other.user_id,
            other.start_ms,
            other.end_ms,
            other.first_key,
            other.device_type,
            other.geo_region,
            other.event_count,
        )
        for name, n in other.counts.items():
            self.counts[name] = self.counts.get(name, 0) + n
        self.revenue_cents += other.revenue_cents
        for category, n in other.category_views.items():
            self.category_views[category] = self.category_views.get(category, 0) + n
        return self

    def _span(
        self,
        user_id: str,
        start_ms: int,
        end_ms: int,
        first_key: tuple[int, str],
        device_type: str,
        geo_region: str,
        events: int,
    ) -> None:
        """Extend the time span and event count; the earliest event decides device and region."""
        if self.event_count == 0:
            self.user_id, self.start_ms, self.end_ms = user_id, start_ms, end_ms
            self.first_key, self.device_type, self.geo_region = first_key, device_type, geo_region
        else:
            if first_key < self.first_key:
                self.first_key, self.device_type, self.geo_region = first_key, device_type, geo_region
            if start_ms < self.start_ms:
                self.start_ms = start_ms
            if end_ms > self.end_ms:
                self.end_ms = end_ms
        self.event_count += events

    @property
    def primary_category(self) -> str | None:
        """The most viewed category (alphabetically first on a tie); None without product views."""
        if not self.category_views:
            return None
        return min(self.category_views, key=lambda c: (-self.category_views[c], c))

    def record(self, pane_timing: str = "ON_TIME", pane_index: int = 0) -> dict[str, Any]:
        """The ``user_sessions`` row (session_aggregate schema, Python form) of a window's
        ``pane_index``-th firing."""
        counts = {name: self.counts.get(name, 0) for name in _COUNTED.values()}
        return {
            "user_id": self.user_id,
            "session_id": session_id(self.user_id, self.start_ms),
            "session_start": millis_to_datetime(self.start_ms),
            "session_end": millis_to_datetime(self.end_ms),
            "duration_seconds": (self.end_ms - self.start_ms) / 1000,
            "event_count": self.event_count,
            **counts,
            "total_revenue": (Decimal(self.revenue_cents) / 100).quantize(_CENT),
            "device_type": self.device_type,
            "geo_region": self.geo_region,
            "primary_category": self.primary_category,
            "converted": counts["purchase_count"] > 0,
            "cart_abandoned": counts["add_to_cart_count"] > 0 and counts["purchase_count"] == 0,
            "pane_timing": pane_timing,
            "pane_index": pane_index,
        }


@dataclass(slots=True)
class UserSessions:
    """One user's sessions, as disjoint aggregates sorted by start: sessionization as a mergeable value.

    Two spans of event times belong to one session exactly when Beam's session windows
    would merge them: [a1, b1 + gap) and [a2, b2 + gap) overlap. Adding events and merging
    partial ``UserSessions`` in any order and grouping gives the same sessions, so a
    CombineFn can build them in parallel (the batch form of the sessions job).
    """

    gap_ms: int
    sessions: list[SessionAggregate] = field(default_factory=list)

    def __reduce__(self) -> tuple[Any, ...]:
        return UserSessions, (self.gap_ms, self.sessions)

    def add(self, event: Mapping[str, Any]) -> UserSessions:
        at_ms = to_millis(event["event_time"])
        gap = self.gap_ms
        for i, session in enumerate(self.sessions):
            if session.start_ms - gap < at_ms < session.end_ms + gap:
                session.add(event, at_ms)
                self._join_neighbours(i)
                return self
        return self._insert(SessionAggregate().add(event, at_ms))

    def merge(self, other: UserSessions) -> UserSessions:
        for session in other.sessions:
            self._insert(session)
        return self

    def _insert(self, incoming: SessionAggregate) -> UserSessions:
        """Add a session span, merging every session it overlaps (the list stays disjoint and sorted)."""
        if not self.sessions:
            self.sessions = [incoming]
            return self
        gap = self.gap_ms
        kept: list[SessionAggregate] = []
        for session in self.sessions:
            if session.start_ms < incoming.end_ms + gap and incoming.start_ms < session.end_ms + gap:
                incoming.merge(session)
            else:
                kept.append(session)
        kept.append(incoming)
        kept.sort(key=lambda s: s.start_ms)
        self.sessions = kept
        return self

    def _join_neighbours(self, i: int) -> None:
        """Session ``i`` grew: merge it with the neighbours it now reaches."""
        gap, sessions = self.gap_ms, self.sessions
        grown = sessions[i]
        while i + 1 < len(sessions) and sessions[i + 1].start_ms < grown.end_ms + gap:
            grown.merge(sessions.pop(i + 1))
        while i > 0 and grown.start_ms < sessions[i - 1].end_ms + gap:
            grown = sessions[i - 1].merge(grown)
            sessions.pop(i)
            i -= 1
