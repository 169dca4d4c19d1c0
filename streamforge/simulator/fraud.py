"""Labelled fraud scenarios, one planner per pattern, built to match the rules in config.

Each scenario opens a Case tagging the events that form the pattern; the case becomes a
ground-truth label (fraud_labels.jsonl) once they are written. Scenarios keep clear of the
other patterns, so every label names exactly the pattern its events match.
"""

from __future__ import annotations

from streamforge.config import FraudRules
from streamforge.events import EventType, FraudPattern
from streamforge.geo import COUNTRIES, REGIONS, distance_km
from streamforge.simulator.catalog import Product
from streamforge.simulator.engine import Case, Order, Session, Simulation, User
from streamforge.simulator.shoppers import (
    CHECKOUT_URL,
    HOME_URL,
    PAID,
    PAYMENT_FAILED,
    Line,
    build_order,
    cart_cents,
    cart_units,
    fulfilment,
    open_session,
    place_order,
)

__all__ = ["anomaly_distance_km", "check_injectable", "far_countries", "plan_scenario"]

_HIGH_VALUE_CATEGORIES = ("electronics", "computers", "jewelry")
_MIN_ANOMALY_KM = 3000.0


def plan_scenario(sim: Simulation, pattern: FraudPattern) -> None:
    _SCENARIOS[pattern](sim)


def _span(case: Case) -> str:
    minutes, seconds = divmod((case.end_ms - case.start_ms) // 1000, 60)
    return f"{minutes}m{seconds:02d}s"


def _fraudster(sim: Simulation) -> User:
    """A fresh account that exists only for this scenario (never reused by normal traffic)."""
    user = sim.new_user()
    user.available_at = float("inf")
    sim.stats.new_users += 1
    return user


def _affordable(sim: Simulation, limit_cents: int) -> Product:
    """A product a shopper might buy, priced below ``limit_cents``."""
    for _ in range(8):
        product = sim.catalog.pick_product(sim.rng, sim.catalog.pick_category(sim.rng))
        if product.price_cents < limit_cents:
            return product
    return sim.catalog.cheapest(1)[0]


def _fill_cart(sim: Simulation, t: int, session: Session, lines: list[Line], step_ms: int) -> int:
    """Plan viewing and adding each line after ``t``, then checkout; returns when the shopper can pay.

    Each step takes between half and all of ``step_ms``.
    """
    click, rng = sim.emit_click, sim.rng

    def step() -> int:
        return t + max(1, int(step_ms * rng.uniform(0.5, 1.0)))

    for product, quantity in lines:
        t = step()
        sim.at(t, click, (session, EventType.PRODUCT_VIEW, product.url, product))
        t = step()
        sim.at(t, click, (session, EventType.ADD_TO_CART, product.url, product, quantity))
    t = step()
    sim.at(t, click, (session, EventType.CHECKOUT_START, CHECKOUT_URL, None, cart_units(lines), cart_cents(lines)))
    return step()


def _pay_soon(sim: Simulation, t: int, order: Order, card: str) -> None:
    """A successful payment a few seconds after ``t``, then the usual fulfilment."""
    paid = t + sim.uniform_ms((2.0, 10.0))
    sim.at(paid, sim.emit_order, (order, PAID, card))
    fulfilment(sim, paid, order, card)


def rapid_orders(sim: Simulation) -> None:
    """A new account places several orders in quick succession with one card."""
    rules, rng = sim.rules, sim.rng
    window_ms = int(rules.rapid_orders_window.total_seconds() * 1000)
    count = rules.rapid_orders_count + rng.randrange(3)
    user = _fraudster(sim)
    card = sim.card_of(user)
    case = sim.open_case(FraudPattern.RAPID_ORDERS, user.user_id, expected=count, needed=rules.rapid_orders_count)
    case.describe = lambda c: f"{len(c.orders)} orders in {_span(c)} by a new account"
    session = open_session(sim, user)
    t = sim.now
    sim.at(t, sim.emit_click, (session, EventType.PAGE_VIEW, HOME_URL))
    # Four cart steps per order, all orders within 75% of the window: every order is inside it.
    step_ms = max(1, int(window_ms * 0.75) // (count * 4))
    limit = int(rules.high_value_first_order * 100) // 4
    for _ in range(count):
        lines = [[_affordable(sim, limit), 1]]
        t = _fill_cart(sim, t, session, lines, step_ms)
        order = build_order(sim, session, lines, payment_method="card", discount=False)
        place_order(sim, t, session, order, card=card, case=case)
        _pay_soon(sim, t, order, card)


def high_value_first_order(sim: Simulation) -> None:
    """A new account's first order is far above the threshold."""
    rules, rng = sim.rules, sim.rng
    target = int(float(rules.high_value_first_order) * 100 * rng.uniform(1.05, 2.5))
    user = _fraudster(sim)
    card = sim.card_of(user)
    case = sim.open_case(FraudPattern.HIGH_VALUE_FIRST_ORDER, user.user_id, expected=1)
    session = open_session(sim, user)
    t = sim.now
    sim.at(t, sim.emit_click, (session, EventType.PAGE_VIEW, HOME_URL))
    expensive = sim.catalog.priciest(_HIGH_VALUE_CATEGORIES, 20)
    lines: list[Line] = []
    while cart_cents(lines) <= target:
        product = expensive[rng.randrange(len(expensive))]
        line = next((line for line in lines if line[0] is product), None)
        if line is None:
            lines.append([product, 1 + rng.randrange(2)])
        else:
            line[1] += 1
    t = _fill_cart(sim, t, session, lines, sim.uniform_ms((10.0, 40.0)))
    order = build_order(sim, session, lines, payment_method="card", discount=False)
    case.describe = lambda c: (
        f"first order of {order.total_cents / 100:,.2f} {sim.settings.currency} above {rules.high_value_first_order:,.2f}"
    )
    place_order(sim, t, session, order, card=card, case=case)
    _pay_soon(sim, t, order, card)


def far_countries(home: str, min_km: float) -> list[str]:
    """Countries at least ``min_km`` from ``home`` (a LOCATION_ANOMALY can come from there)."""
    return [c for c in COUNTRIES if (distance_km(home, c) or 0.0) >= min_km]


def anomaly_distance_km(rules: FraudRules) -> float:
    """How far apart the two orders of an injected LOCATION_ANOMALY are, at least."""
    return max(_MIN_ANOMALY_KM, rules.min_travel_distance_km)


def check_injectable(rules: FraudRules, patterns: tuple[FraudPattern, ...]) -> list[str]:
    """Why some of ``patterns`` cannot be injected under ``rules`` (empty when all can)."""
    min_km = anomaly_distance_km(rules)
    if FraudPattern.LOCATION_ANOMALY in patterns and not any(far_countries(c, min_km) for c in COUNTRIES):
        return [f"LOCATION_ANOMALY: no two shop countries are {min_km:,.0f} km apart (fraud.min_travel_distance_km)"]
    return []


def _victim(sim: Simulation, min_km: float) -> User:
    """A registered user to take over, living somewhere with a country ``min_km`` away."""
    for _ in range(8):
        user = sim.borrow_user()
        if far_countries(user.country, min_km):
            return user
        sim.release_user(user, sim.now)
    # Only with a very large fraud.min_travel_distance_km: a registered user from a far-flung region.
    regions = [r for r in REGIONS.values() if far_countries(r.country, min_km)]
    region = regions[sim.rng.randrange(len(regions))]
    user = sim.new_user(returning=True)
    user.region, user.country, user.available_at = region.code, region.country, float("inf")
    return user


def location_anomaly(sim: Simulation) -> None:
    """Account takeover: a registered user's order, then one from far away minutes later."""
    rules, rng = sim.rules, sim.rng
    min_km = anomaly_distance_km(rules)
    user = _victim(sim, min_km)
    card = sim.card_of(user)
    home = user.country
    candidates = far_countries(home, min_km)
    far = candidates[rng.randrange(len(candidates))]
    far_region = next(r.code for r in REGIONS.values() if r.country == far)
    distance = distance_km(home, far) or 0.0
    travel_ms = int(distance / rules.max_travel_speed_kmh * 3_600_000)
    case = sim.open_case(FraudPattern.LOCATION_ANOMALY, user.user_id, expected=2)
    case.describe = lambda c: (
        f"orders from {home} and {far}, {distance:,.0f} km apart, {_span(c)} apart "
        f"(would need {distance / max(c.end_ms - c.start_ms, 1) * 3_600_000:,.0f} km/h)"
    )
    limit = int(rules.high_value_first_order * 100) // 4
    # The victim orders at home ...
    session = open_session(sim, user)
    away_device = "desktop" if session.device != "desktop" else "mobile"
    sim.at(sim.now, sim.emit_click, (session, EventType.PAGE_VIEW, HOME_URL))
    lines = [[_affordable(sim, limit), 1]]
    home_at = _fill_cart(sim, sim.now, session, lines, sim.uniform_ms((5.0, 20.0)))
    order = build_order(sim, session, lines, payment_method="card", discount=False, ip_country=home)
    place_order(sim, home_at, session, order, card=card, case=case)
    _pay_soon(sim, home_at, order, card)
    # ... and the intruder orders from far away in at most half the time the journey takes.
    away_at = home_at + max(1, min(int(rng.uniform(2, 20) * 60_000), travel_ms // 2))
    step_ms = max(1, min(sim.uniform_ms((5.0, 20.0)), (away_at - home_at) // 5))
    session = open_session(sim, user, device=away_device, region=far_region)
    browse_at = away_at - 4 * step_ms  # landing, then four steps of at most step_ms
    sim.at(browse_at, sim.emit_click, (session, EventType.PAGE_VIEW, HOME_URL))
    lines = [[_affordable(sim, limit), 1]]
    _fill_cart(sim, browse_at, session, lines, step_ms)
    order = build_order(sim, session, lines, payment_method="card", discount=False, ip_country=far)
    place_order(sim, away_at, session, order, card=card, case=case)
    _pay_soon(sim, away_at, order, card)
    # Back home only once the journey would have been possible, so the return is no anomaly.
    sim.release_user(user, away_at + travel_ms)


def card_testing(sim: Simulation) -> None:
    """Stolen-card testing on one cheap order: a burst of failures or many cards, then a success."""
    rules, rng = sim.rules, sim.rng
    window_ms = int(rules.card_testing_window.total_seconds() * 1000)
    user = _fraudster(sim)
    if rng.random() < 0.5:
        failures = rules.card_testing_failed_payments + rng.randrange(3)
        cards = [sim.card_of(user)] * (failures + 1)
        how = f"{failures} failed payments"
    else:
        distinct = rules.card_testing_distinct_cards + rng.randrange(2)
        cards = [sim.card_fingerprint() for _ in range(distinct)]
        how = f"{distinct} different cards"
    case = sim.open_case(FraudPattern.CARD_TESTING, user.user_id, expected=len(cards))
    case.describe = lambda c: f"{how} in {_span(c)}, then a successful payment"
    session = open_session(sim, user)
    t = sim.now
    sim.at(t, sim.emit_click, (session, EventType.PAGE_VIEW, HOME_URL))
    lines = [[sim.catalog.cheapest(10)[rng.randrange(10)], 1]]
    t = _fill_cart(sim, t, session, lines, sim.uniform_ms((3.0, 10.0)))
    order = build_order(sim, session, lines, payment_method="card", discount=False)
    place_order(sim, t, session, order, card=cards[0])
    step_ms = max(1, int(window_ms * 0.75) // len(cards))
    for i, card in enumerate(cards):
        t += int(step_ms * rng.uniform(0.5, 1.0))
        sim.at(t, sim.emit_order, (order, PAID if i == len(cards) - 1 else PAYMENT_FAILED, card, case))
    fulfilment(sim, t, order, cards[-1])


_SCENARIOS = {
    FraudPattern.RAPID_ORDERS: rapid_orders,
    FraudPattern.HIGH_VALUE_FIRST_ORDER: high_value_first_order,
    FraudPattern.LOCATION_ANOMALY: location_anomaly,
    FraudPattern.CARD_TESTING: card_testing,
}
