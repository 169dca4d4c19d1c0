"""`streamforge cdc run` as a process, started and stopped the way an operator would."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from tests.support.cli import STREAMFORGE, entry_point_env

__all__ = ["start_capture", "stop_capture", "summary_row"]


def start_capture(url: str, output: str, offsets: Path, **env: str) -> subprocess.Popen:
    """The connector on database ``url`` publishing to ``output``, offsets in ``offsets``."""
    return subprocess.Popen([str(STREAMFORGE), "cdc", "run", "--database", url, "--output", output,
                             "--offsets", str(offsets), "--quiet"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=entry_point_env(**env))


def stop_capture(process: subprocess.Popen, sig: int = signal.SIGTERM) -> int:
    """Send ``sig`` and return the exit code; a stop that hangs fails (the JVM is killed, never left behind)."""
    process.send_signal(sig)
    try:
        return process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError(f"cdc run did not stop within 60 s of {signal.Signals(sig).name}") from None


def summary_row(stdout: str) -> list[int]:
    """The numbers of `run cdc`'s summary table (read, changes, redelivered, tombstones,
    heartbeats, dead-lettered, applied, stale)."""
    for line in stdout.splitlines():
        cells = [c.strip().replace(",", "") for c in line.strip("│ ").split("│")]
        if len(cells) == 8 and all(c.isdigit() for c in cells):
            return [int(c) for c in cells]
    raise AssertionError(f"no summary row in:\n{stdout}")
