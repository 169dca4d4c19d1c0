"""Running ``streamforge`` in tests: in-process (fast) or as the installed console script."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner, Result

from streamforge.cli import app

#: The console script pip installed next to this interpreter: the real entry point.
STREAMFORGE = Path(sys.executable).parent / "streamforge"


def run_cli(*args: str) -> Result:
    """Run ``streamforge ARGS`` in-process; an unexpected exception fails the test with its traceback."""
    result = CliRunner().invoke(app, list(args), catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def entry_point_env(**extra: str) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if k != "STREAMFORGE_CONFIG"}
    environment.update(extra)
    return environment


def run_entry_point(
    *args: str, timeout: float = 120, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``streamforge`` console script as a separate process."""
    process = subprocess.run(
        [str(STREAMFORGE), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env=entry_point_env(**(env or {})),
    )
    if check and process.returncode != 0:
        raise AssertionError(f"streamforge {' '.join(args)} exited {process.returncode}:\n{process.stderr}")
    return process


def simulate_to(directory: Path, *options: str) -> Path:
    """``streamforge simulate --output file://DIRECTORY OPTIONS`` (in-process)."""
    result = run_cli("simulate", "--output", f"file://{directory}", "--quiet", *options)
    assert result.exit_code == 0, result.output
    return directory


def start_entry_point(*args: str, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``streamforge ARGS`` in the background, as a user starts it: its own process group, no
    standard input, its output in ``log``. Stop it with ``stop_entry_point``."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [str(STREAMFORGE), *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=entry_point_env(**(env or {})),
            start_new_session=True,
        )


def wait_while_running(process: subprocess.Popen, log: Path, what: str, condition, timeout: float = 120):
    """``condition()``'s first true value; fails with the log's tail if ``process`` exits first or
    time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        tail = log.read_text(errors="replace")[-3000:]
        assert process.poll() is None, f"exited {process.returncode} while waiting for {what}:\n{tail}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{tail}"
        time.sleep(0.5)


def stop_entry_point(process: subprocess.Popen, timeout: float = 300) -> int:
    """Ctrl-C (SIGINT: a drain), then its exit code; a stop that hangs kills the process group
    and fails."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise AssertionError(f"{process.args[1:3]} did not stop within {timeout} s of Ctrl-C") from None
