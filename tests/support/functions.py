"""Running a Cloud Function as a real functions-framework process on 127.0.0.1, for tests and
benchmarks: from the checkout (``streamforge functions serve``) or from a packaged folder."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from streamforge.functions.packaging import FUNCTIONS
from tests.support.cli import STREAMFORGE, entry_point_env
from tests.support.servers import LOOPBACK, free_port, stop_process, wait_for_port


def parse_log_lines(text: str) -> list[dict]:
    """The structured (JSON) log lines in a function's output, in order."""
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return lines


@dataclass
class RunningFunction:
    url: str
    log: Path

    def log_lines(self) -> list[dict]:
        """The function's structured log lines so far."""
        return parse_log_lines(self.log.read_text(errors="replace"))


def install_wheel(wheel: Path, target: Path) -> Path:
    """The wheel unpacked into ``target`` (no dependencies: those come from this environment)."""
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, stdin=subprocess.DEVNULL)
    return target


@contextmanager
def running_function(name: str, env: dict[str, str], *, bundle: Path | None = None,
                     site: Path | None = None) -> Iterator[RunningFunction]:
    """``streamforge functions serve NAME``, or with ``bundle`` (a packaged folder) and ``site``
    (its installed wheel) functions-framework on that folder alone, as Cloud Functions runs it."""
    port = free_port()
    spec = FUNCTIONS[name]
    with tempfile.TemporaryDirectory(prefix=f"sf-fn-{name}-") as tmp:
        log = Path(tmp) / "function.log"
        if bundle is None:
            command = [str(STREAMFORGE), "functions", "serve", name, "--port", str(port)]
            cwd, extra = tmp, {}
        else:
            command = [sys.executable, "-m", "functions_framework", "--target", spec.target, "--source", "main.py",
                       "--signature-type", spec.signature_type, "--host", LOOPBACK, "--port", str(port)]
            cwd, extra = str(bundle), {"PYTHONPATH": str(site)}
        with open(log, "wb") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd,
                                       env=entry_point_env(**extra, **env), start_new_session=True)
        try:
            wait_for_port(port, process, log, timeout=60)
            yield RunningFunction(f"http://{LOOPBACK}:{port}/", log)
        finally:
            stop_process(process)
