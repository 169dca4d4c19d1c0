"""Realistic OLTP traffic for the shop's PostgreSQL database, at a rate, from a seed.

Each step is one transaction, picked by weight:

- new order (PENDING) with 1-4 items from in-stock products, the stock decremented and a SALE
  inventory movement per item;
- an order moves along its lifecycle (lifecycle.py): PENDING -> PAID or CANCELLED, PAID ->
  SHIPPED, REFUNDED or CANCELLED, SHIPPED -> DELIVERED, DELIVERED -> REFUNDED (rarely); a
  cancelled or refunded order's items go back to stock (RETURN movements);
- a price change (a sale: original_price keeps the list price; or the list price moves);
- a restock of a product running low;
- a customer changes city or loyalty tier;
- an old cancelled order is deleted (its items go with it: deletes flow through CDC too).

The products are the simulator's catalogue (same ids as ``sku``, categories and prices), and
customers are the simulator's shopper ids, so CDC data and clickstream join. The same seed
on the same starting database gives the same sequence of changes.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable

from streamforge.cdc.lifecycle import ORDER_TRANSITIONS
from streamforge.geo import REGIONS
from streamforge.simulator.catalog import default_catalog

__all__ = ["Workload", "WorkloadStats", "init_database"]

_ACTIONS = (
    ("new_order", 0.34),
    ("advance_order", 0.40),
    ("price_change", 0.08),
    ("restock", 0.08),
    ("customer_update", 0.06),
    ("delete_cancelled", 0.04),
)
_TIERS = ("standard", "silver", "gold", "platinum")
_FIRST = (
    "Ada",
    "Ben",
    "Chloe",
    "Dev",
    "Elif",
    "Femi",
    "Greta",
    "Hiro",
    "Ines",
    "Jonas",
    "Kemal",
    "Lina",
    "Mateo",
    "Noor",
)
_LAST = ("Smith", "Nguyen", "Garcia", "Okafor", "Schmidt", "Tanaka", "Rossi", "Kowalski", "Silva", "Haddad")
_PAYMENT = ("card", "paypal", "apple_pay", "google_pay", "gift_card")
_CENT = Decimal("0.01")


def init_database(con: Any, schema_sql: str) -> bool:
    """Apply the OLTP schema unless the tables exist; True if it was applied."""
    exists = con.execute("SELECT to_regclass('public.products') IS NOT NULL").fetchone()[0]
    if not exists:
        con.execute(schema_sql)
        con.commit()
    return not exists


@dataclass
class WorkloadStats:
    operations: dict[str, int] = field(default_factory=dict)
    transactions: int = 0


class Workload:
    """Drives changes into an initialised database (``init_database``), one transaction per step."""

    def __init__(self, con: Any, seed: int, *, customers: int = 2000):
        self.con, self.rng = con, random.Random(seed)
        self.stats = WorkloadStats()
        self._seed_reference_data(customers)
        rows = con.execute("SELECT id, stock_quantity, price FROM products ORDER BY id").fetchall()
        self.products = [r[0] for r in rows]
        self.customers = [r[0] for r in con.execute("SELECT id FROM customers ORDER BY id").fetchall()]
        self.open_orders: dict[str, list[int]] = {status: [] for status in ORDER_TRANSITIONS}
        for order_id, status in con.execute("SELECT id, order_status FROM orders ORDER BY id").fetchall():
            if status in self.open_orders:
                self.open_orders[status].append(order_id)
        self.cancelled = [
            r[0] for r in con.execute("SELECT id FROM orders WHERE order_status = 'CANCELLED' ORDER BY id")
        ]
        con.commit()

    def _seed_reference_data(self, customers: int) -> None:
        con = self.con
        if con.execute("SELECT count(*) FROM products").fetchone()[0] == 0:
            rng = random.Random(20261101)  # the catalogue is the same for every seed
            rows = []
            for product in default_catalog().products:
                price = Decimal(product.price_cents) / 100
                brand = f"{product.category.split('_')[0].title()}Co {rng.randint(1, 12)}"
                rows.append(
                    (
                        product.product_id,
                        f"{product.category.replace('_', ' ').title()} item {product.product_id[-4:]}",
                        product.category,
                        None,
                        brand,
                        price,
                        price,
                        rng.randint(20, 400),
                        rng.randint(1, 50),
                    )
                )
            with con.cursor() as cur:
                cur.executemany(
                    "INSERT INTO products (sku, name, category, subcategory, brand, price, original_price, "
                    "stock_quantity, seller_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    rows,
                )
        if con.execute("SELECT count(*) FROM customers").fetchone()[0] == 0:
            rng = random.Random(7)
            regions = list(REGIONS.values())
            rows = []
            for n in range(1, customers + 1):
                region = rng.choice(regions)
                external = f"U{n:08d}"
                rows.append(
                    (
                        external,
                        f"{external.lower()}@example.com",
                        f"{rng.choice(_FIRST)} {rng.choice(_LAST)}",
                        region.country,
                        region.city,
                        "standard",
                    )
                )
            with con.cursor() as cur:
                cur.executemany(
                    "INSERT INTO customers (external_id, email, full_name, country, city, loyalty_tier) "
                    "VALUES (%s, %s, %s, %s, %s, %s)",
                    rows,
                )
        con.commit()

    # -- running --------------------------------------------------------------------------

    def step(self) -> str:
        """One transaction; returns the action taken."""
        action = self._pick(_ACTIONS)
        done = getattr(self, f"_{action}")()
        if not done:  # nothing to do for that action yet (no open order, ...): place an order instead
            action = "new_order"
            self._new_order()
        self.con.commit()
        self.stats.transactions += 1
        self.stats.operations[action] = self.stats.operations.get(action, 0) + 1
        return action

    def run(
        self,
        *,
        rate: float | None,
        operations: int | None,
        duration_s: float | None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> WorkloadStats:
        """Steps at ``rate`` per second (as fast as possible without), until ``operations``
        steps, ``duration_s`` seconds or ``should_stop()``."""
        started = time.monotonic()
        while not should_stop():
            if operations is not None and self.stats.transactions >= operations:
                break
            elapsed = time.monotonic() - started
            if duration_s is not None and elapsed >= duration_s:
                break
            if rate:
                ahead = self.stats.transactions / rate - elapsed
                if ahead > 0:
                    time.sleep(min(ahead, 0.2))
                    continue
            self.step()
        return self.stats

    def _pick(self, weighted: tuple[tuple[str, float], ...]) -> str:
        point = self.rng.random() * sum(w for _, w in weighted)
        for name, weight in weighted:
            point -= weight
            if point < 0:
                return name
        return weighted[-1][0]

    # -- the actions ----------------------------------------------------------------------

    def _new_order(self) -> bool:
        rng, con = self.rng, self.con
        customer = rng.choice(self.customers)
        wanted = rng.sample(self.products, rng.choice((1, 1, 2, 2, 3, 4)))
        rows = con.execute(
            "SELECT id, price, stock_quantity FROM products WHERE id = ANY(%s) AND is_active "
            "AND stock_quantity > 0 ORDER BY id FOR UPDATE",
            (wanted,),
        ).fetchall()
        if not rows:
            return False
        lines = [(pid, price, rng.randint(1, min(3, stock))) for pid, price, stock in rows]
        subtotal = sum((price * qty for _, price, qty in lines), Decimal(0))
        discount = (subtotal * Decimal(rng.choice((0, 0, 0, 5, 10))) / 100).quantize(_CENT)
        shipping = Decimal("0.00") if subtotal >= 50 else Decimal("4.99")
        region = rng.choice(list(REGIONS.values()))
        (order_id,) = con.execute(
            "INSERT INTO orders (customer_id, total_amount, discount_amount, shipping_amount, payment_method, shipping_city) "
            "VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
            (customer, subtotal - discount + shipping, discount, shipping, rng.choice(_PAYMENT), region.city),
        ).fetchone()
        for pid, price, qty in lines:
            con.execute(
                "INSERT INTO order_items (order_id, product_id, quantity, unit_price) VALUES (%s, %s, %s, %s)",
                (order_id, pid, qty, price),
            )
            self._move_stock(pid, -qty, "SALE", order_id)
        self.open_orders["PENDING"].append(order_id)
        return True

    def _advance_order(self) -> bool:
        """An order picked uniformly among the open ones (delivered ones rarely: refunds are rare)."""
        weighted = tuple(
            (s, len(orders) * (0.03 if s == "DELIVERED" else 1.0)) for s, orders in self.open_orders.items()
        )
        if not any(w for _, w in weighted):
            return False
        status = self._pick(weighted)
        orders = self.open_orders[status]
        order_id = orders.pop(self.rng.randrange(len(orders)))
        target = self._pick(ORDER_TRANSITIONS[status])
        self.con.execute("UPDATE orders SET order_status = %s WHERE id = %s", (target, order_id))
        if target in ("CANCELLED", "REFUNDED"):
            for pid, qty in self.con.execute(
                "SELECT product_id, quantity FROM order_items WHERE order_id = %s ORDER BY id", (order_id,)
            ).fetchall():
                self._move_stock(pid, qty, "RETURN", order_id)
            if target == "CANCELLED":
                self.cancelled.append(order_id)
        elif target in self.open_orders:
            self.open_orders[target].append(order_id)
        return True

    def _price_change(self) -> bool:
        pid = self.rng.choice(self.products)
        factor = Decimal(self.rng.choice((70, 80, 85, 90, 95, 105, 110, 120))) / 100
        if self.rng.random() < 0.5:  # a sale off the list price, or back to it
            self.con.execute(
                "UPDATE products SET price = CASE WHEN price < original_price THEN original_price "
                "ELSE round(original_price * %s, 2) END WHERE id = %s",
                (factor, pid),
            )
        else:  # the list price itself moves
            self.con.execute(
                "UPDATE products SET price = round(price * %s, 2), original_price = round(price * %s, 2) WHERE id = %s",
                (factor, factor, pid),
            )
        return True

    def _restock(self) -> bool:
        row = self.con.execute(
            "SELECT id FROM products ORDER BY stock_quantity, id LIMIT 1 OFFSET %s", (self.rng.randrange(10),)
        ).fetchone()
        if row is None:
            return False
        self._move_stock(row[0], self.rng.randint(50, 200), "RESTOCK", None)
        return True

    def _customer_update(self) -> bool:
        customer = self.rng.choice(self.customers)
        if self.rng.random() < 0.5:
            self.con.execute(
                "UPDATE customers SET loyalty_tier = %s WHERE id = %s", (self.rng.choice(_TIERS), customer)
            )
        else:
            region = self.rng.choice(list(REGIONS.values()))
            self.con.execute(
                "UPDATE customers SET city = %s, country = %s WHERE id = %s", (region.city, region.country, customer)
            )
        return True

    def _delete_cancelled(self) -> bool:
        if len(self.cancelled) < 5:
            return False
        order_id = self.cancelled.pop(0)
        self.con.execute("DELETE FROM orders WHERE id = %s", (order_id,))  # its order_items go by ON DELETE CASCADE
        return True

    def _move_stock(self, product_id: int, change: int, reason: str, order_id: int | None) -> None:
        self.con.execute("UPDATE products SET stock_quantity = stock_quantity + %s WHERE id = %s", (change, product_id))
        reference = None if order_id is None else f"order:{order_id}"
        self.con.execute(
            "INSERT INTO inventory_movements (product_id, change_quantity, reason, reference) VALUES (%s, %s, %s, %s)",
            (product_id, change, reason, reference),
        )
