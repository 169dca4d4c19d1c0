"""`streamforge up` seen from outside, as a user sees it: its state file, its progress, and
orders injected where the simulator publishes them."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from streamforge.live.system import sink_records
from streamforge.schemas import get_schema
from streamforge.services import free_port
from streamforge.timeutil import format_timestamp
from tests.support.cli import start_entry_point
from tests.support.samples import sample

__all__ = ["delivered_to", "inject_rapid_orders", "live_state", "start_up"]


def live_state(workdir: Path) -> dict | None:
    """`up`'s state file (WORKDIR/live.json) once the dashboard is up, else None."""
    try:
        state = json.loads((workdir / "live.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return state if "dashboard" in state["urls"] else None


def inject_rapid_orders(state: dict, project: str, record: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Three orders by one user within seconds (RAPID_ORDERS), published as the simulator does
    (to the Kafka broker's orders topic when the run has one)."""
    schema, now = get_schema("order_event"), datetime.now(timezone.utc)
    orders = [
        sample(
            "order_event",
            event_id=f"inject-{i}",
            order_id=f"INJ{i}",
            user_id="U-injected",
            event_time=now + timedelta(milliseconds=200 * i),
            status="CREATED",
        )
        for i in range(3)
    ]
    lines = [schema.to_json(order) for order in orders]
    attributes = [
        {"event_id": o["event_id"], "event_time": format_timestamp(o["event_time"]), "encoding": "json"} for o in orders
    ]
    if "kafka-broker" in state["services"]:
        from tests.support.kafka import produce

        produce(
            state["services"]["kafka-broker"]["address"],
            "orders",
            [(line, [(k, v.encode()) for k, v in a.items()]) for line, a in zip(lines, attributes)],
            partitions=3,
        )
    else:
        from google.cloud import pubsub_v1

        monkeypatch.setenv("PUBSUB_EMULATOR_HOST", state["services"]["pubsub-emulator"]["address"])
        publisher = pubsub_v1.PublisherClient()
        for line, a in zip(lines, attributes):
            publisher.publish(f"projects/{project}/topics/orders", line, **a).result(timeout=30)
    record.write_bytes(b"".join(line + b"\n" for line in lines))
    return "U-injected"


def start_up(
    workdir: Path, log: Path, project: str, *options: str, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """`streamforge up` at a reduced rate (60 events/s), as a user starts it, with ``options``
    (and ``env``, e.g. STREAMFORGE_CONFIG); stop it with Ctrl-C (tests.support.cli.stop_entry_point)."""
    return start_entry_point(
        "up",
        *("--rate", "60", "--workdir", str(workdir), "--project", project, "--port", str(free_port())),
        *("--seed", "3", *options),
        log=log,
        env=env,
    )


def delivered_to(workdir: Path, user: str) -> list[dict[str, Any]]:
    """The alerts about ``user`` the run's webhook sink accepted (its log's records)."""
    return [
        r
        for r in sink_records(workdir / "logs" / "webhook-sink.log")
        if r.get("verdict") == "alert" and r["body"]["user_id"] == user
    ]
