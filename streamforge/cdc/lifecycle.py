"""The order lifecycle of the shop database: which status may follow which.

One definition for both sides: the CDC workload moves orders along it (with these weights),
and the CDC job flags any transition it does not allow as an anomaly.
"""

from __future__ import annotations

__all__ = ["INITIAL_STATUS", "ORDER_TRANSITIONS", "transition_problem"]

INITIAL_STATUS = "PENDING"
#: status -> ((next status, weight), ...); CANCELLED and REFUNDED are final.
ORDER_TRANSITIONS: dict[str, tuple[tuple[str, float], ...]] = {
    "PENDING": (("PAID", 0.85), ("CANCELLED", 0.15)),
    "PAID": (("SHIPPED", 0.92), ("REFUNDED", 0.04), ("CANCELLED", 0.04)),
    "SHIPPED": (("DELIVERED", 1.0),),
    "DELIVERED": (("REFUNDED", 1.0),),
}


def transition_problem(from_status: str | None, to_status: str) -> str | None:
    """None if an order may go from ``from_status`` (None: a new order) to ``to_status``, else why not."""
    if from_status is None:
        return None if to_status == INITIAL_STATUS else f"a new order must start {INITIAL_STATUS}, not {to_status}"
    allowed = [status for status, _ in ORDER_TRANSITIONS.get(from_status, ())]
    if to_status in allowed:
        return None
    if not allowed:
        return f"{from_status} is final; it cannot become {to_status}"
    return f"{from_status} -> {to_status} is not allowed (only {', '.join(allowed)})"
