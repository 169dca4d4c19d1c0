"""What the CDC job derives from row changes: changelog rows and business events. Plain Python.

- ``changelog_row``: every change, as a ``<table>_changelog`` row.
- ``price_change``: a product's price moved (old, new, percent).
- ``stock_alert``: a product's stock crossed below the threshold (LOW_STOCK) or reached 0
  (OUT_OF_STOCK); raised on the crossing, not again for every change while it stays low.
- ``order_status_transition``: an order was created or changed status, checked against the
  lifecycle (streamforge/cdc/lifecycle.py); a transition it does not allow is kept with
  ``is_valid`` false and the reason: an anomaly to look at, not an error to drop.

Every event carries the change's LSN: (key, LSN) identifies it, so a redelivered change gives
the same event, which the warehouse keeps once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from beam_pipelines.cdc.envelope import Change
from streamforge.cdc.lifecycle import transition_problem

__all__ = ["changelog_row", "order_status_transition", "price_change", "stock_alert"]


def _json(image: Any) -> str | None:
    return None if image is None else orjson.dumps(image).decode()


def changelog_row(change: Change, ingested_at: datetime) -> dict[str, Any]:
    return {
        "source_table": change.table,
        "op": change.op,
        "primary_key": change.key_json,
        "lsn": change.lsn,
        "tx_id": change.tx_id,
        "source_ts": change.source_ts,
        "snapshot": change.snapshot,
        "before": _json(change.before),
        "after": _json(change.after),
        "ingested_at": ingested_at,
    }


def _old(change: Change, column: str) -> Any:
    """The column's value before an update, None if not known."""
    return None if change.previous is None else change.previous.get(column)


def price_change(change: Change) -> dict[str, Any] | None:
    """A ``price_changes`` row for a products update that changed the price (needs the before image)."""
    if change.table != "products" or change.op != "u":
        return None
    old, new = _old(change, "price"), change.row.get("price")
    if old is None or new is None or old == new:
        return None
    row = change.row
    return {
        "product_id": row["id"],
        "sku": row["sku"],
        "category": row["category"],
        "old_price": old,
        "new_price": new,
        "change_pct": None if old == 0 else round(float((new - old) / old * 100), 2),
        "original_price": row.get("original_price"),
        "changed_at": change.source_ts,
        "lsn": change.lsn,
    }


def stock_alert(change: Change, threshold: int) -> dict[str, Any] | None:
    """A ``stock_alerts`` row when a product's stock crosses below ``threshold`` or reaches 0."""
    if change.table != "products" or change.op == "d":
        return None
    new = change.row.get("stock_quantity")
    if new is None or new >= threshold:
        return None
    old = _old(change, "stock_quantity")
    if change.op == "u" and old is None:
        return None  # an update whose before image lacks the stock: nothing to compare with
    crossed = old is None or old >= threshold or (new == 0 and old > 0)
    if not crossed:
        return None
    row = change.row
    return {
        "product_id": row["id"],
        "sku": row["sku"],
        "alert_type": "OUT_OF_STOCK" if new == 0 else "LOW_STOCK",
        "stock_quantity": new,
        "previous_quantity": old,
        "threshold": threshold,
        "changed_at": change.source_ts,
        "lsn": change.lsn,
    }


def order_status_transition(change: Change) -> dict[str, Any] | None:
    """An ``order_status_transitions`` row for a new order or a status change (not for snapshot rows)."""
    if change.table != "orders" or change.op not in ("c", "u"):
        return None
    to_status = change.row.get("order_status")
    if change.op == "u":
        from_status = _old(change, "order_status")
        if from_status is None or from_status == to_status:
            return None
    else:
        from_status = None
    problem = transition_problem(from_status, to_status)
    row = change.row
    return {
        "order_id": row["id"],
        "order_number": row["order_number"],
        "customer_id": row["customer_id"],
        "from_status": from_status,
        "to_status": to_status,
        "is_valid": problem is None,
        "anomaly": problem,
        "total_amount": row["total_amount"],
        "changed_at": change.source_ts,
        "lsn": change.lsn,
    }
