"""Running ``streamforge`` in tests: in-process (fast) or as the installed console script."""

from __future__ import annotations

import os
import subprocess
import sys
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
