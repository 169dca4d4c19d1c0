"""The shop's product catalogue: categories with price ranges and popularity.

The catalogue is fixed (it does not depend on the simulation seed), so product ids are the
same in every run and can seed the OLTP products table.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["CATEGORIES", "SHOP_URL", "Catalog", "Category", "Product", "default_catalog"]


@dataclass(frozen=True)
class Category:
    name: str
    code: str
    min_price_cents: int
    max_price_cents: int
    product_count: int
    browse_weight: float  # share of shopper interest


SHOP_URL = "https://shop.example.com"


@dataclass(frozen=True, slots=True)
class Product:
    product_id: str
    category: str
    price_cents: int
    url: str  # its product page


CATEGORIES: tuple[Category, ...] = (
    Category("electronics", "ELE", 1999, 199999, 60, 0.16),
    Category("computers", "COM", 4999, 299999, 40, 0.08),
    Category("home_kitchen", "HOM", 999, 49999, 80, 0.14),
    Category("fashion", "FAS", 999, 29999, 120, 0.18),
    Category("beauty", "BEA", 499, 12999, 60, 0.09),
    Category("sports_outdoors", "SPO", 999, 89999, 60, 0.08),
    Category("toys_games", "TOY", 599, 19999, 60, 0.07),
    Category("books", "BOO", 499, 5999, 100, 0.09),
    Category("grocery", "GRO", 199, 4999, 80, 0.05),
    Category("jewelry", "JEW", 2999, 499999, 40, 0.06),
)

_CATALOG_SEED = 20261101


class Catalog:
    """Products by category, with Zipf-like popularity for picking what shoppers look at."""

    def __init__(self, categories: tuple[Category, ...], seed: int = _CATALOG_SEED):
        rng = random.Random(seed)
        self.categories = categories
        self.by_category: dict[str, tuple[Product, ...]] = {}
        self._cumulative: dict[str, list[float]] = {}
        for cat in categories:
            products = tuple(
                Product(
                    pid, cat.name, _shop_price(rng, cat.min_price_cents, cat.max_price_cents), f"{SHOP_URL}/p/{pid}"
                )
                for pid in (f"P-{cat.code}-{i:04d}" for i in range(1, cat.product_count + 1))
            )
            self.by_category[cat.name] = products
            weights = [1.0 / (rank**0.8) for rank in range(1, len(products) + 1)]
            self._cumulative[cat.name] = list(itertools.accumulate(weights))
        self.products = tuple(p for ps in self.by_category.values() for p in ps)
        self._category_cumulative = list(itertools.accumulate(c.browse_weight for c in categories))
        self._category_names = tuple(c.name for c in categories)
        self.category_urls = {c.name: f"{SHOP_URL}/c/{c.name}" for c in categories}

    def pick_category(self, rng: random.Random) -> str:
        point = rng.random() * self._category_cumulative[-1]
        return self._category_names[bisect.bisect(self._category_cumulative, point)]

    def pick_product(self, rng: random.Random, category: str) -> Product:
        cumulative = self._cumulative[category]
        return self.by_category[category][bisect.bisect(cumulative, rng.random() * cumulative[-1])]

    def priciest(self, categories: tuple[str, ...], count: int) -> list[Product]:
        """The ``count`` most expensive products in these categories, priciest first."""
        pool = [p for c in categories for p in self.by_category[c]]
        return sorted(pool, key=lambda p: (-p.price_cents, p.product_id))[:count]

    def cheapest(self, count: int) -> list[Product]:
        return sorted(self.products, key=lambda p: (p.price_cents, p.product_id))[:count]


def _shop_price(rng: random.Random, low: int, high: int) -> int:
    """Log-uniform in [low, high] cents, ending in .99 like shop prices."""
    dollars = math.exp(rng.uniform(math.log(low / 100), math.log(high / 100)))
    return max(low, min(high, int(dollars) * 100 + 99))


@lru_cache(maxsize=1)
def default_catalog() -> Catalog:
    return Catalog(CATEGORIES)
