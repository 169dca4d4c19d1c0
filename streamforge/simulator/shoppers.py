"""Normal shoppers: browsing sessions driven by a state machine, and order lifecycles.

Each function plans its events when called (see ``Simulation.at``). Normal traffic never
matches a fraud pattern by construction: a user has at most one order per visit and visits
further apart than every fraud window; an order has at most one failed payment before a
success, with a second card only while two cards are below the CARD_TESTING threshold; a
user always shops from one country; and a first order stays below the high-value threshold.
"""

from __future__ import annotations

from bisect import bisect
from typing import Any, Iterable

from streamforge.events import OrderStatus, PaymentMethod
from streamforge.simulator.catalog import SHOP_URL
from streamforge.simulator.engine import Case, Order, Session, Simulation, User
from streamforge.simulator.profile import CART, CHECKOUT, EXIT, PAGE, PRODUCT, PURCHASE, UNCART

__all__ = [
    "CHECKOUT_URL",
    "HOME_URL",
    "Line",
    "Payment",
    "browsing_session",
    "build_order",
    "cart_cents",
    "cart_units",
    "fulfilment",
    "normal_payments",
    "open_session",
    "order_lifecycle",
    "place_order",
]

HOME_URL, CART_URL, CHECKOUT_URL, COMPLETE_URL = (
    f"{SHOP_URL}/",
    f"{SHOP_URL}/cart",
    f"{SHOP_URL}/checkout",
    f"{SHOP_URL}/checkout/complete",
)
CREATED, PAID, PAYMENT_FAILED = str(OrderStatus.CREATED), str(OrderStatus.PAID), str(OrderStatus.PAYMENT_FAILED)
CANCELLED, SHIPPED, DELIVERED = str(OrderStatus.CANCELLED), str(OrderStatus.SHIPPED), str(OrderStatus.DELIVERED)
Payment = tuple[int, str, str | None]  # (delay ms, PAID or PAYMENT_FAILED, card fingerprint)
Line = list[Any]  # [Product, quantity]


def open_session(sim: Simulation, user: User, *, device: str | None = None, region: str | None = None) -> Session:
    rng = sim.rng
    if device is None:
        device = user.device if rng.random() < sim.profile.home_device_share else sim.choose_device(rng)
    agents = sim.profile.user_agents[device]
    sim.stats.sessions += 1
    return Session(
        sim.session_id(),
        user,
        device,
        agents[int(rng.random() * len(agents))],
        sim.choose_referrer(rng),
        region or user.region,
    )


def browsing_session(sim: Simulation, user: User) -> None:
    """Plan one visit from now: land, browse, maybe fill a cart, maybe check out and buy."""
    rng, catalog, profile = sim.rng, sim.catalog, sim.profile
    random_, at, click = rng.random, sim.at, sim.emit_click
    think_table, quantiles = sim.think_table, len(sim.think_table)
    pick_category, pick_product, category_urls = catalog.pick_category, catalog.pick_product, catalog.category_urls
    transitions = sim.transitions
    focus = profile.category_focus
    session = open_session(sim, user)
    interest = user.interest if random_() < 0.8 else pick_category(rng)
    cart: dict[str, Line] = {}
    t = sim.now
    at(t, click, (session, PAGE, HOME_URL if random_() < 0.5 else category_urls[interest]))
    state, viewed = PAGE, None
    for _ in range(profile.max_session_events - 1):
        chooser = transitions[state]
        state = chooser.keys[bisect(chooser.cumulative, random_())]
        if state == EXIT:
            break
        if ((state == CHECKOUT or state == UNCART) and not cart) or (state == CART and viewed is None):
            state = PRODUCT
        t += think_table[int(random_() * quantiles)]
        if state == PRODUCT:
            viewed = pick_product(rng, interest if random_() < focus else pick_category(rng))
            at(t, click, (session, PRODUCT, viewed.url, viewed))
        elif state == PAGE:
            category = pick_category(rng)
            at(t, click, (session, PAGE, category_urls[category], None, None, None, None, category))
        elif state == CART:
            quantity = sim.choose_quantity(rng)
            cart.setdefault(viewed.product_id, [viewed, 0])[1] += quantity
            at(t, click, (session, CART, viewed.url, viewed, quantity))
        elif state == UNCART:
            product, quantity = cart.pop(list(cart)[int(random_() * len(cart))])
            at(t, click, (session, UNCART, CART_URL, product, quantity))
        elif state == CHECKOUT:
            at(t, click, (session, CHECKOUT, CHECKOUT_URL, None, cart_units(cart.values()), cart_cents(cart.values())))
        else:  # PURCHASE
            lines = list(cart.values())
            if not user.orders:
                lines = _within_first_order_limit(sim, lines)
            order = build_order(sim, session, lines)
            payments = normal_payments(sim, order)
            place_order(sim, t, session, order, card=payments[0][2])
            order_lifecycle(sim, t, order, payments)
            break
    sim.release_user(user, t)


def cart_cents(lines: Iterable[Line]) -> int:
    return sum(product.price_cents * quantity for product, quantity in lines)


def cart_units(lines: Iterable[Line]) -> int:
    return sum(quantity for _, quantity in lines)


def _within_first_order_limit(sim: Simulation, lines: list[Line]) -> list[Line]:
    """Trim a normal first order so it stays below the high-value threshold (that is fraud's)."""
    limit_cents = int(sim.rules.high_value_first_order * 100) - max(sim.profile.shipping_cents)
    lines = sorted(([p, q] for p, q in lines), key=lambda line: line[0].price_cents)
    while cart_cents(lines) > limit_cents:
        if lines[-1][1] > 1:
            lines[-1][1] -= 1
        elif len(lines) > 1:
            lines.pop()
        else:
            lines = [[sim.catalog.cheapest(1)[0], 1]]
            break
    return lines


def build_order(
    sim: Simulation,
    session: Session,
    lines: list[Line],
    *,
    payment_method: str | None = None,
    ip_country: str | None = None,
    shipping_region: str | None = None,
    discount: bool | None = None,
) -> Order:
    rng, profile = sim.rng, sim.profile
    user = session.user
    subtotal = cart_cents(lines)
    use_discount = rng.random() < profile.discount_rate if discount is None else discount
    discount_cents = subtotal * rng.randint(*profile.discount_percent) // 100 if use_discount else 0
    shipping = 0 if subtotal >= profile.free_shipping_from_cents else profile.shipping_cents[rng.randrange(2)]
    items = [
        {"product_id": p.product_id, "category": p.category, "quantity": q, "unit_price": p.price_cents / 100}
        for p, q in lines
    ]
    return Order(
        order_id=sim.order_id(),
        user=user,
        session_id=session.session_id,
        items=items,
        units=cart_units(lines),
        subtotal_cents=subtotal,
        discount_cents=discount_cents,
        shipping_cents=shipping,
        payment_method=payment_method or sim.choose_payment(rng),
        shipping_region=shipping_region or session.region,
        ip_country=ip_country or user.country,
        is_first_order=user.orders == 0,
    )


def normal_payments(sim: Simulation, order: Order) -> list[Payment]:
    """At most one failure per order, retried with the same or the user's other card."""
    rng, profile = sim.rng, sim.profile
    card = None if order.payment_method in (PaymentMethod.PAYPAL, PaymentMethod.GIFT_CARD) else sim.card_of(order.user)
    first = sim.uniform_ms(profile.payment_delay_s)
    if rng.random() >= profile.payment_failure_rate:
        return [(first, PAID, card)]
    attempts: list[Payment] = [(first, PAYMENT_FAILED, card)]
    if rng.random() < profile.payment_retry_rate:
        # A second card is only normal while two cards stay below the CARD_TESTING threshold.
        other_card_ok = sim.rules.card_testing_distinct_cards > 2
        if card is not None and other_card_ok and rng.random() < profile.retry_with_other_card:
            card = sim.card_of(order.user, 1)
        outcome = PAID if rng.random() < profile.retry_success_rate else PAYMENT_FAILED
        attempts.append((sim.uniform_ms(profile.retry_delay_s), outcome, card))
    return attempts


def place_order(
    sim: Simulation, t: int, session: Session, order: Order, *, card: str | None, case: Case | None = None
) -> None:
    """Plan the purchase click and the order's CREATED event at ``t``."""
    sim.at(t, sim.emit_click, (session, PURCHASE, COMPLETE_URL, None, order.units, order.total_cents, order.order_id))
    order.user.orders += 1
    sim.at(t, sim.emit_order, (order, CREATED, card, case))


def order_lifecycle(sim: Simulation, t: int, order: Order, payments: list[Payment]) -> None:
    """Plan payment attempts after ``t``; once one succeeds, fulfilment follows."""
    for delay, outcome, card in payments:
        t += delay
        sim.at(t, sim.emit_order, (order, outcome, card))
        if outcome == PAID:
            fulfilment(sim, t, order, card)
            return


def fulfilment(sim: Simulation, t: int, order: Order, card: str | None) -> None:
    """Plan what follows a payment at ``t``: a few orders are cancelled, the rest ship and arrive."""
    rng, profile = sim.rng, sim.profile
    if rng.random() < profile.cancel_rate:
        sim.at(t + sim.uniform_ms(profile.cancel_delay_s), sim.emit_order, (order, CANCELLED, card))
        return
    shipped = t + sim.uniform_ms(profile.ship_delay_s)
    sim.at(shipped, sim.emit_order, (order, SHIPPED, card))
    sim.at(shipped + sim.uniform_ms(profile.deliver_delay_s), sim.emit_order, (order, DELIVERED, card))
