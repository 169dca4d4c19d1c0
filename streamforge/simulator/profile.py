"""How normal shoppers behave: the parameters of the traffic model.

Plain data, so a test or a what-if run can swap any of it (``dataclasses.replace``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DEFAULT_PROFILE", "TrafficProfile", "PAGE", "PRODUCT", "CART", "UNCART", "CHECKOUT", "PURCHASE", "EXIT"]

# Session states; each emits the clickstream event of the same name.
PAGE, PRODUCT, CART, UNCART, CHECKOUT, PURCHASE, EXIT = (
    "page_view",
    "product_view",
    "add_to_cart",
    "remove_from_cart",
    "checkout_start",
    "purchase",
    "exit",
)


@dataclass(frozen=True)
class TrafficProfile:
    # Who: device, region and referrer mixes (weights).
    devices: dict[str, float] = field(default_factory=lambda: {"mobile": 0.58, "desktop": 0.35, "tablet": 0.07})
    regions: dict[str, float] = field(
        default_factory=lambda: {
            "us-east": 0.20,
            "us-west": 0.14,
            "ca-central": 0.05,
            "sa-east": 0.06,
            "eu-west": 0.12,
            "eu-central": 0.12,
            "eu-north": 0.04,
            "ap-south": 0.08,
            "ap-southeast": 0.06,
            "ap-northeast": 0.08,
            "au-southeast": 0.05,
        }
    )
    referrers: dict[str | None, float] = field(
        default_factory=lambda: {
            None: 0.35,
            "https://www.google.com/": 0.30,
            "https://mail.example.net/newsletter": 0.10,
            "https://www.facebook.com/": 0.08,
            "https://www.instagram.com/": 0.07,
            "https://www.bing.com/": 0.05,
            "https://deals.example.org/": 0.05,
        }
    )
    user_agents: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: {
            "mobile": (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
                "Mozilla/5.0 (Linux; Android 15; Pixel 9) AppleWebKit/537.36 Chrome/140.0 Mobile Safari/537.36",
                "StreamForgeShop/5.2 (Android 14; SM-S921B)",
            ),
            "desktop": (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/140.0 Safari/537.36",
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 Version/18.1 Safari/605.1.15",
                "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
            ),
            "tablet": (
                "Mozilla/5.0 (iPad; CPU OS 18_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
                "Mozilla/5.0 (Linux; Android 14; SM-X710) AppleWebKit/537.36 Chrome/140.0 Safari/537.36",
            ),
        }
    )
    # What: the session state machine. Next-state weights per state; the landing event is a page view.
    transitions: dict[str, dict[str, float]] = field(
        default_factory=lambda: {
            PAGE: {PRODUCT: 0.55, PAGE: 0.20, EXIT: 0.25},
            PRODUCT: {PRODUCT: 0.35, CART: 0.18, PAGE: 0.17, EXIT: 0.30},
            CART: {PRODUCT: 0.33, CHECKOUT: 0.32, UNCART: 0.08, PAGE: 0.07, EXIT: 0.20},
            UNCART: {PRODUCT: 0.40, CHECKOUT: 0.15, PAGE: 0.10, EXIT: 0.35},
            CHECKOUT: {PURCHASE: 0.68, CART: 0.04, EXIT: 0.28},
        }
    )
    max_session_events: int = 60
    category_focus: float = 0.7  # share of product views in the session's category of interest
    quantities: dict[int, float] = field(default_factory=lambda: {1: 0.80, 2: 0.14, 3: 0.06})
    # When: think time between events (log-normal, seconds), capped well below the session gap.
    think_median_s: float = 20.0
    think_sigma: float = 0.9
    think_max_s: float = 600.0
    # Users: share of sessions from brand-new visitors, and of registered users who ordered before.
    new_visitor_share: float = 0.12
    returning_customer_share: float = 0.55
    home_device_share: float = 0.8  # sessions on the user's usual device
    # Orders: payment, discounts, shipping, lifecycle.
    payment_methods: dict[str, float] = field(
        default_factory=lambda: {"card": 0.68, "paypal": 0.15, "apple_pay": 0.08, "google_pay": 0.06, "gift_card": 0.03}
    )
    payment_delay_s: tuple[float, float] = (2.0, 20.0)
    payment_failure_rate: float = 0.04
    payment_retry_rate: float = 0.6
    retry_with_other_card: float = 0.3
    retry_delay_s: tuple[float, float] = (30.0, 120.0)
    retry_success_rate: float = 0.9
    discount_rate: float = 0.2
    discount_percent: tuple[int, int] = (5, 20)
    free_shipping_from_cents: int = 5000
    shipping_cents: tuple[int, ...] = (499, 799)
    cancel_rate: float = 0.04
    cancel_delay_s: tuple[float, float] = (300.0, 10800.0)
    ship_delay_s: tuple[float, float] = (3600.0, 86400.0)
    deliver_delay_s: tuple[float, float] = (86400.0, 4 * 86400.0)


DEFAULT_PROFILE = TrafficProfile()
