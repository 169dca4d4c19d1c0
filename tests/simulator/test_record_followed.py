"""A simulation's files read while they are written (a live run's record of what it published,
followed by `tail -f` or a checker): complete lines appear within about a second."""

from __future__ import annotations

import time
from pathlib import Path

import orjson

from streamforge.services import stop_process
from tests.support.cli import start_entry_point


def test_the_files_can_be_followed_while_they_are_written(tmp_path: Path) -> None:
    log = tmp_path / "simulate.log"
    simulator = start_entry_point(
        "simulate", "--output", f"file://{tmp_path / 'out'}", "--rate", "100", "--duration", "60s", "-q", log=log
    )
    try:
        clicks = tmp_path / "out" / "clickstream.jsonl"
        deadline, lines = time.monotonic() + 20, []
        while len(lines) < 200:  # two seconds' worth at 100 events/s
            assert time.monotonic() < deadline, f"{len(lines)} complete lines after 20 s: {log.read_text()[-2000:]}"
            time.sleep(0.2)
            text = clicks.read_bytes() if clicks.exists() else b""
            lines = text[: text.rfind(b"\n") + 1].splitlines()  # complete lines: up to the last newline
        assert all(orjson.loads(line)["event_id"] for line in lines)
        assert simulator.poll() is None  # read while it still writes
    finally:
        stop_process(simulator)
