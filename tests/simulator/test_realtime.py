"""Real-time mode and clean shutdown on Ctrl-C (SIGINT) and SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest

from streamforge.schemas import get_schema
from tests.support.cli import STREAMFORGE, entry_point_env, run_entry_point

pytestmark = pytest.mark.slow


def _events(directory: Path) -> list[dict]:
    events = []
    for name, subject in (("clickstream.jsonl", "clickstream_event"), ("orders.jsonl", "order_event")):
        schema = get_schema(subject)
        events += [schema.from_json(line) for line in (directory / name).read_bytes().splitlines()]
    return events


def test_rate_and_wall_clock_timestamps(tmp_path: Path) -> None:
    before = datetime.now(timezone.utc)
    run_entry_point("simulate", "--output", f"file://{tmp_path}", "--rate", "150", "--duration", "4s", "--quiet")
    after = datetime.now(timezone.utc)
    events = _events(tmp_path)
    # About 600 events: the shop is warm from the first second (no slow ramp-up).
    assert 300 <= len(events) <= 900
    times = [e["event_time"] for e in events]
    assert before.replace(microsecond=0) <= min(times) and max(times) <= after
    first_second = sum(1 for t in times if (t - min(times)).total_seconds() < 1)
    assert first_second >= 50


def _start(tmp_path: Path, *options: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(STREAMFORGE), "simulate", "--output", f"file://{tmp_path}", *options],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=entry_point_env(),
    )


@pytest.mark.parametrize(
    "signum, mode, exit_code",
    [
        (signal.SIGINT, ("--rate", "300"), 0),  # real time until Ctrl-C: the normal way to stop
        (signal.SIGTERM, ("--rate", "300"), 0),
        (signal.SIGINT, ("--duration", "30d"), 130),  # a simulated-time run cut short
        (signal.SIGTERM, ("--duration", "30d"), 130),
    ],
)
def test_signals_stop_cleanly(tmp_path: Path, signum: int, mode: tuple[str, ...], exit_code: int) -> None:
    process = _start(tmp_path, *mode)
    time.sleep(3)
    assert process.poll() is None, process.stderr.read() if process.stderr else ""
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == exit_code, stderr
    assert "Simulation summary" in stderr and "(stopped early)" in stderr
    summary = orjson.loads((tmp_path / "summary.json").read_bytes())
    assert summary["stopped_early"] is True
    events = _events(tmp_path)  # every line complete and valid: nothing half-written
    assert len(events) == summary["messages"] > 100
    for line in (tmp_path / "fraud_labels.jsonl").read_bytes().splitlines():
        orjson.loads(line)
