"""The discrete-event engine behind ``streamforge simulate``.

Actors (a browsing session, an order's lifecycle, a fraud scenario) are plain functions that
*plan* their activity when they start: each event becomes an entry ``(time, seq, emit, args)``
in a calendar queue with one bucket per simulated second. The engine emits buckets in time
order, sorting each one, so output is ordered by event time. Anything planned starts at or
after the moment it is planned, so a bucket is final once session arrivals have moved past
it. A real-time clock makes emission follow the wall clock; without one the run goes as fast
as it can.

Everything random comes from one seeded ``random.Random``: the same settings and seed give
the same events, byte for byte. Fault injection draws from a second generator, so turning it
on adds malformed messages and duplicates without changing the valid events.

This is the hot path of a 100k events/s target: events are built at emission as plain dicts
in their JSON form, and hot methods bind what they use to locals.
"""

from __future__ import annotations

import gc
import heapq
import itertools
import math
import random
import time
from bisect import bisect, bisect_left
from contextlib import contextmanager
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any, Callable, Iterator, Protocol

from streamforge.config import FraudRules
from streamforge.events import FraudPattern
from streamforge.geo import REGIONS
from streamforge.simulator.catalog import Catalog, Product, default_catalog
from streamforge.simulator.faults import Faults
from streamforge.simulator.profile import DEFAULT_PROFILE, TrafficProfile
from streamforge.simulator.stats import SimulationStats
from streamforge.timeutil import format_millis

__all__ = ["Case", "Order", "RealTimeClock", "Session", "Settings", "Simulation", "Sink", "User"]

CLICKSTREAM, ORDERS = "clickstream", "orders"
_QUANTILES = 4096  # resolution of the think-time distribution table
_COOLDOWN_MARGIN_MS = 5 * 60_000  # covers payment retries after a session's last click


def _entry_time(entry: tuple[Any, ...]) -> int:
    return entry[0]


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """Run the garbage collector's young generation less often while simulating.

    The calendar and the user population keep many small containers alive, and the
    default threshold (700) makes the collector walk them again and again: about a
    quarter of the run time with a large population. Events themselves are freed by
    reference counting, so collecting less often costs no memory.
    """
    previous = gc.get_threshold()
    gc.set_threshold(50_000, previous[1], previous[2])
    try:
        yield
    finally:
        gc.set_threshold(*previous)


class Sink(Protocol):
    """Where events go. Implementations: streamforge.simulator.sinks."""

    format: str

    def emit(self, stream: str, event: dict[str, Any]) -> None: ...

    def emit_raw(self, stream: str, payload: bytes, *, key: str | None, event_id: str, event_time: str) -> None: ...

    def encode(self, stream: str, event: dict[str, Any]) -> bytes: ...


@dataclass(frozen=True)
class Settings:
    seed: int
    start_ms: int
    sessions_per_second: float
    users: int
    currency: str
    fraud_rate: float
    fraud_patterns: tuple[FraudPattern, ...]
    rules: FraudRules
    session_gap_ms: int
    malformed_fraction: float = 0.0
    duplicate_fraction: float = 0.0
    #: Run the shop silently for this long before ``start_ms`` so output begins in steady state
    #: (sessions already under way). No fraud or faults are injected during the warm-up.
    warmup_ms: int = 0


@dataclass(slots=True)
class User:
    user_id: str
    region: str
    country: str
    device: str
    interest: str
    cards: list[str]
    orders: int = 0
    available_at: float = 0.0  # ms; the user is in a session (or cooling down) until then


@dataclass(slots=True)
class Session:
    session_id: str
    user: User
    device: str
    user_agent: str
    referrer: str | None  # the previous page once the session is under way
    region: str


@dataclass(slots=True)
class Order:
    order_id: str
    user: User
    session_id: str | None
    items: list[dict[str, Any]]
    units: int
    subtotal_cents: int
    discount_cents: int
    shipping_cents: int
    payment_method: str
    shipping_region: str
    ip_country: str
    is_first_order: bool

    @property
    def total_cents(self) -> int:
        return self.subtotal_cents - self.discount_cents + self.shipping_cents


@dataclass
class Case:
    """One injected fraud pattern instance.

    Its ``expected`` tagged events form the pattern; once ``needed`` of them are out the data
    matches. The label is written when all are out, or at the end of a run cut short.
    """

    pattern: FraudPattern
    user_id: str
    expected: int
    needed: int
    describe: Callable[[Case], str] = lambda case: ""
    orders: list[str] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)
    start_ms: int = 0
    end_ms: int = 0

    def saw(self, order_id: str, event_id: str, at_ms: int) -> None:
        if not self.event_ids:
            self.start_ms = at_ms
        if order_id not in self.orders:
            self.orders.append(order_id)
        self.event_ids.append(event_id)
        self.end_ms = at_ms


class RealTimeClock:
    """Simulated time follows the wall clock from ``start_ms``."""

    def __init__(self, start_ms: int, should_stop: Callable[[], bool]):
        self._start_ms = start_ms
        self._origin = time.monotonic()
        self._should_stop = should_stop

    def wait_until(self, sim_ms: int) -> None:
        while not self._should_stop():
            ahead = (sim_ms - self._start_ms) / 1000.0 - (time.monotonic() - self._origin)
            if ahead <= 0.001:
                return
            time.sleep(min(ahead, 0.2))


class Chooser:
    """Pick a key with probability proportional to its weight, in O(log n)."""

    __slots__ = ("keys", "cumulative")

    def __init__(self, weights: dict[Any, float]):
        self.keys = list(weights)
        total = sum(weights.values())
        self.cumulative = [c / total for c in itertools.accumulate(weights[k] for k in self.keys)]
        self.cumulative[-1] = 1.0

    def __call__(self, rng: random.Random) -> Any:
        return self.keys[bisect(self.cumulative, rng.random())]


class Simulation:
    def __init__(
        self,
        settings: Settings,
        sink: Sink,
        *,
        profile: TrafficProfile = DEFAULT_PROFILE,
        catalog: Catalog | None = None,
        on_label: Callable[[dict[str, Any]], None] | None = None,
    ):
        self.settings = settings
        self.sink = sink
        self.profile = profile
        self.catalog = catalog or default_catalog()
        self.rules = settings.rules
        self.rng = random.Random(settings.seed)
        self.now = settings.start_ms - settings.warmup_ms
        self.stats = SimulationStats()
        self._on_label = on_label or (lambda label: None)
        self._buckets: dict[int, list[tuple[int, int, Callable[..., None], tuple[Any, ...]]]] = {}
        self._seconds: list[int] = []  # heap of bucket keys
        self._seq = itertools.count()
        self._open_cases: dict[int, Case] = {}
        self._case_ids = itertools.count(1)
        self._ts_second = -1
        self._ts_prefix = ""
        self._faults = Faults(self, settings.malformed_fraction, settings.duplicate_fraction, settings.seed)
        self._after_emit = self._faults.after if self._faults.enabled else None
        self._sink_emit = sink.emit
        self._silent = False  # during a warm-up: events happen but are not built or written
        self.choose_device = Chooser(profile.devices)
        self.choose_region = Chooser(profile.regions)
        self.choose_referrer = Chooser(profile.referrers)
        self.choose_payment = Chooser(profile.payment_methods)
        self.choose_quantity = Chooser(profile.quantities)
        self.transitions = {state: Chooser(weights) for state, weights in profile.transitions.items()}
        # Think time stays below the session gap, so a simulated session is one session window.
        normal = NormalDist(math.log(profile.think_median_s), profile.think_sigma)
        think_max_s = min(profile.think_max_s, settings.session_gap_ms / 1000 * 0.9)
        self.think_table = [
            int(1000 * min(max(math.exp(normal.inv_cdf((i + 0.5) / _QUANTILES)), 1.0), think_max_s))
            for i in range(_QUANTILES)
        ]
        # A user's visits are further apart than the session gap and than every fraud window
        # (plus room for payment retries), so no normal user's orders can form a pattern.
        self._cooldown_ms = (
            max(
                settings.session_gap_ms,
                self.rules.rapid_orders_window.total_seconds() * 1000,
                self.rules.card_testing_window.total_seconds() * 1000,
            )
            + _COOLDOWN_MARGIN_MS
        )
        # Registered users are created the first time they visit (start-up stays instant).
        self.population: list[User | None] = [None] * settings.users
        self._user_ids = itertools.count(1)

    # -- planning ----------------------------------------------------------------------------

    def at(self, at_ms: int, emit: Callable[..., None], args: tuple[Any, ...]) -> None:
        """Call ``emit(*args)`` when simulated time reaches ``at_ms`` (never in the past)."""
        second = at_ms // 1000
        bucket = self._buckets.get(second)
        if bucket is None:
            bucket = self._buckets[second] = []
            heapq.heappush(self._seconds, second)
        bucket.append((at_ms, next(self._seq), emit, args))

    # -- running -----------------------------------------------------------------------------

    def run(
        self,
        until_ms: float,
        arrivals: Iterator[int],
        *,
        clock: RealTimeClock | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        on_progress: Callable[[SimulationStats, int], None] | None = None,
        progress_every: int = 8192,
    ) -> SimulationStats:
        """Run simulated time one second at a time: plan that second's arrivals, then emit it.

        ``arrivals`` yields the time of each arrival and, when resumed at that time, plans
        what starts then. Anything planned starts at or after its arrival, so once every
        arrival of a second is planned, the second is final and can be emitted in time
        order. Stops at ``until_ms`` or when ``should_stop()`` turns true.
        """
        with _fewer_collections():
            return self._run(until_ms, arrivals, clock, should_stop, on_progress, progress_every)

    def _run(
        self,
        until_ms: float,
        arrivals: Iterator[int],
        clock: RealTimeClock | None,
        should_stop: Callable[[], bool],
        on_progress: Callable[[SimulationStats, int], None] | None,
        progress_every: int,
    ) -> SimulationStats:
        next_arrival = next(arrivals)
        if self.settings.warmup_ms > 0:
            next_arrival = self._warm_up(arrivals, next_arrival, should_stop)
        wall_start = time.perf_counter()
        stats = self.stats
        report_every = progress_every if clock is None else 1
        next_report = 0
        while True:
            next_arrival, horizon, stopped = self._step(arrivals, next_arrival, until_ms, clock, should_stop)
            if on_progress is not None and stats.messages >= next_report:
                next_report = stats.messages + report_every
                on_progress(stats, self.now)
            if stopped or horizon >= until_ms or should_stop():
                break
        self._finish()
        stats.wall_seconds = time.perf_counter() - wall_start
        stats.sim_start_ms = self.settings.start_ms
        stats.sim_end_ms = self.now if stopped or not math.isfinite(until_ms) else int(until_ms)
        stats.stopped_early = stopped or should_stop()
        if on_progress is not None:
            on_progress(stats, stats.sim_end_ms)
        return stats

    def _step(
        self,
        arrivals: Iterator[int],
        next_arrival: int,
        limit: float,
        clock: RealTimeClock | None,
        should_stop: Callable[[], bool],
    ) -> tuple[int, float, bool]:
        """Plan the arrivals in ``next_arrival``'s second (before ``limit``), then emit up to its end.

        Returns the next unplanned arrival, the time emitted up to, and whether a stop was asked.
        """
        horizon = min((next_arrival // 1000 + 1) * 1000, limit)
        while next_arrival < horizon:
            self.now = next_arrival
            next_arrival = next(arrivals)
        return next_arrival, horizon, self._emit_until(horizon, clock, should_stop)

    def _warm_up(self, arrivals: Iterator[int], next_arrival: int, should_stop: Callable[[], bool]) -> int:
        """Simulate from ``start_ms - warmup_ms`` to ``start_ms`` writing nothing; returns the next arrival."""
        start = self.settings.start_ms
        self._silent = True
        horizon = -math.inf
        while horizon < start:
            next_arrival, horizon, stopped = self._step(arrivals, next_arrival, start, None, should_stop)
            if stopped:
                break
        self._silent = False
        self.now = max(self.now, start)
        self.stats = SimulationStats()  # count only what is written
        return next_arrival

    def _emit_until(self, horizon: float, clock: RealTimeClock | None, should_stop: Callable[[], bool]) -> bool:
        """Emit, in time order, every planned event before ``horizon``; True if stopped."""
        seconds, buckets = self._seconds, self._buckets
        while seconds and seconds[0] * 1000 < horizon:
            second = heapq.heappop(seconds)
            entries = buckets.pop(second)
            entries.sort()
            partial = (second + 1) * 1000 > horizon
            if partial:  # only the part of this second before the horizon is final yet
                cut = bisect_left(entries, horizon, key=_entry_time)
                if cut < len(entries):
                    buckets[second] = entries[cut:]
                    heapq.heappush(seconds, second)
                    entries = entries[:cut]
            if clock is None:
                for at_ms, _, emit, args in entries:
                    self.now = at_ms
                    emit(*args)
                if should_stop():
                    return True
            else:
                for at_ms, _, emit, args in entries:
                    clock.wait_until(at_ms)
                    if should_stop():  # the run ends here; what is still planned never happens
                        return True
                    self.now = at_ms
                    emit(*args)
            if partial:  # the rest of this second waits for the next horizon
                break
        return False

    def _finish(self) -> None:
        """A run cut short still labels every case whose pattern is already in the data."""
        for case in list(self._open_cases.values()):
            if len(case.event_ids) >= case.needed:
                self._write_label(case)
        self._open_cases.clear()

    # -- population ------------------------------------------------------------------------

    def new_user(self, *, returning: bool = False) -> User:
        rng = self.rng
        region = self.choose_region(rng)
        return User(
            f"U{next(self._user_ids):08d}",
            region,
            REGIONS[region].country,
            self.choose_device(rng),
            self.catalog.pick_category(rng),
            [],
            1 + int(rng.expovariate(0.5)) if returning else 0,
        )

    def card_of(self, user: User, index: int = 0) -> str:
        """The user's ``index``-th saved card, created when first used."""
        while len(user.cards) <= index:
            user.cards.append(self.card_fingerprint())
        return user.cards[index]

    def borrow_user(self) -> User:
        """A registered user free to start a session now, or a new visitor who signs up.

        A user's visits are kept more than a session gap (and every fraud window) apart, so
        every simulated session is exactly one session window downstream and normal users
        never form a fraud pattern. The caller releases the user.
        """
        random_, population, profile, now = self.rng.random, self.population, self.profile, self.now
        if random_() >= profile.new_visitor_share:
            size = len(population)
            for _ in range(4):
                index = int(random_() * size)
                user = population[index]
                if user is None:
                    user = population[index] = self.new_user(returning=random_() < profile.returning_customer_share)
                if user.available_at <= now:
                    user.available_at = math.inf
                    return user
        user = self.new_user()
        user.available_at = math.inf
        population.append(user)
        self.stats.new_users += 1
        return user

    def release_user(self, user: User, last_event_ms: float) -> None:
        """Free ``user`` for a new visit once the cool-down after ``last_event_ms`` has passed."""
        user.available_at = last_event_ms + self._cooldown_ms

    # -- ids and times ----------------------------------------------------------------------

    def event_id(self) -> str:
        """128 random bits as 32 hex digits."""
        return self.rng.getrandbits(128).to_bytes(16, "big").hex()

    def session_id(self) -> str:
        return "S%016x" % self.rng.getrandbits(64)

    def order_id(self) -> str:
        return "O%016x" % self.rng.getrandbits(64)

    def card_fingerprint(self) -> str:
        return "fp_%016x" % self.rng.getrandbits(64)

    def timestamp(self) -> str:
        """The current simulated time as RFC 3339 with milliseconds (cached per second)."""
        now = self.now
        if now // 1000 != self._ts_second:
            self._ts_second = now // 1000
            self._ts_prefix = format_millis(now - now % 1000)[:-4]
        return f"{self._ts_prefix}{now % 1000:03d}Z"

    def uniform_ms(self, bounds: tuple[float, float]) -> int:
        return int(1000 * self.rng.uniform(*bounds))

    # -- events (called at emission time) ------------------------------------------------------

    def emit_click(
        self,
        session: Session,
        event_type: str,
        page_url: str,
        product: Product | None = None,
        quantity: int | None = None,
        price_cents: int | None = None,
        order_id: str | None = None,
        category: str | None = None,
    ) -> None:
        """A clickstream event now. Product events take id, category and price from ``product``."""
        if self._silent:
            session.referrer = page_url
            return
        if product is not None:
            category = product.category
            if price_cents is None:
                price_cents = product.price_cents
        event = {
            "event_id": self.rng.getrandbits(128).to_bytes(16, "big").hex(),
            "user_id": session.user.user_id,
            "session_id": session.session_id,
            "event_type": event_type,
            "product_id": None if product is None else product.product_id,
            "category": category,
            "price": None if price_cents is None else price_cents / 100,
            "quantity": quantity,
            "event_time": self.timestamp(),
            "device_type": session.device,
            "geo_region": session.region,
            "page_url": page_url,
            "referrer": session.referrer,
            "user_agent": session.user_agent,
            "order_id": order_id,
        }
        session.referrer = page_url
        stats = self.stats
        stats.clicks[event_type] += 1
        stats.messages += 1
        self._sink_emit(CLICKSTREAM, event)
        if self._after_emit is not None:
            self._after_emit(CLICKSTREAM, event)

    def emit_order(self, order: Order, status: str, card: str | None, case: Case | None = None) -> None:
        """An order event now: a snapshot of ``order`` at ``status``."""
        if self._silent:
            return
        event = {
            "event_id": self.event_id(),
            "order_id": order.order_id,
            "user_id": order.user.user_id,
            "session_id": order.session_id,
            "status": status,
            "items": order.items,
            "subtotal": order.subtotal_cents / 100,
            "discount": order.discount_cents / 100,
            "shipping": order.shipping_cents / 100,
            "total_amount": order.total_cents / 100,
            "currency": self.settings.currency,
            "payment_method": order.payment_method,
            "card_fingerprint": card,
            "shipping_region": order.shipping_region,
            "ip_country": order.ip_country,
            "event_time": self.timestamp(),
            "is_first_order": order.is_first_order,
        }
        self.stats.orders[status] += 1
        self.stats.messages += 1
        self._sink_emit(ORDERS, event)
        if self._after_emit is not None:
            self._after_emit(ORDERS, event)
        if case is not None:
            case.saw(order.order_id, event["event_id"], self.now)
            if len(case.event_ids) == case.expected:
                self._write_label(case)

    # -- fraud ground truth ----------------------------------------------------------------------

    def open_case(self, pattern: FraudPattern, user_id: str, *, expected: int, needed: int | None = None) -> Case:
        case = Case(pattern, user_id, expected, expected if needed is None else needed)
        self._open_cases[id(case)] = case
        return case

    def _write_label(self, case: Case) -> None:
        self._open_cases.pop(id(case), None)
        self.stats.fraud_cases[case.pattern] += 1
        self._on_label(
            {
                "case_id": f"case-{self.settings.seed}-{next(self._case_ids):06d}",
                "pattern": str(case.pattern),
                "user_id": case.user_id,
                "order_ids": list(case.orders),
                "event_ids": list(case.event_ids),
                "start": format_millis(case.start_ms),
                "end": format_millis(case.end_ms),
                "description": case.describe(case),
            }
        )
