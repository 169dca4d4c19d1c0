"""`up`'s stop waits until the analytics job has taken, of each stream, what the simulator
published: orders another producer published beside it (a user's own, or the latency
benchmark's injected cases) must not stand in for clicks the job has not taken yet (an hour at
1,000 events/s drained with 5,052 clicks still in their subscription: the totals had matched)."""

from __future__ import annotations

from pathlib import Path

from streamforge.config import load_config
from streamforge.live.progress import write_job_progress
from streamforge.live.system import LiveSettings, LiveSystem

CLICKS = "projects/streamforge-local/subscriptions/streamforge-analytics-clickstream"
ORDERS = "projects/streamforge-local/subscriptions/streamforge-analytics-orders"


def _system(workdir: Path, said: list[str]) -> LiveSystem:
    settings = LiveSettings(workdir=workdir, cdc=False)
    (workdir / "published").mkdir(parents=True)
    (workdir / "published" / "clickstream.jsonl").write_text("{}\n" * 10)
    (workdir / "published" / "orders.jsonl").write_text("{}\n" * 2)
    system = LiveSystem(settings, load_config(), say=said.append)
    system.analytics_inputs = {"clickstream": CLICKS, "orders": ORDERS}  # as start() names the job's inputs
    return system


def _job_took(workdir: Path, clicks: int, orders: int) -> None:
    counts = {"pulled": 0, "duplicates": 0, "watermark_ms": None, "newest_ms": None}
    write_job_progress(
        workdir / "analytics.progress.json",
        {CLICKS: {**counts, "pulled": clicks, "acked": clicks}, ORDERS: {**counts, "pulled": orders, "acked": orders}},
    )


def test_a_stream_behind_is_waited_for_even_when_other_orders_make_up_the_total(tmp_path) -> None:
    said: list[str] = []
    system = _system(tmp_path, said)
    _job_took(tmp_path, clicks=5, orders=12)  # 17 taken of 12 recorded, but 5 clicks missing
    system._wait_until_taken(timeout=1.5)
    assert said == [
        "the jobs had not taken everything published after 2 s (clickstream: 5 not taken); "
        "draining what they have (the rest stays in the subscriptions)"
    ]


def test_every_stream_taken_ends_the_wait_at_once(tmp_path) -> None:
    said: list[str] = []
    system = _system(tmp_path, said)
    _job_took(tmp_path, clicks=10, orders=5)  # 3 of the orders from another producer
    system._wait_until_taken(timeout=30)
    assert said == []
