"""A simulated Dataflow worker's environment: the image's wheelhouse installed into a fresh
virtual environment by the image's own install script, and ways to run things in it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from beam_pipelines.dataflow.image import BuildContext, build_context

CHECK = Path(__file__).with_name("worker_check.py")


class Worker:
    """The environment (``python``), the build context it came from, and a working folder
    outside the checkout (``home``)."""

    def __init__(self, python: Path, context: BuildContext, home: Path):
        self.python, self.context, self.home = python, context, home

    def run(
        self, *args: str, check: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``python ARGS`` in the environment, from ``home``; ``env`` is added to this process's
        environment without anything that points Python elsewhere."""
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}, **(env or {})}
        process = subprocess.run(
            [str(self.python), *args],
            cwd=self.home,
            env=env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=600,
        )
        if check and process.returncode != 0:
            raise AssertionError(f"{args} exited {process.returncode}:\n{process.stderr[-3000:]}")
        return process

    @classmethod
    def from_wheelhouse(cls, home: Path) -> Worker:
        """Builds the image's context into ``home/build`` and installs it as the image does."""
        context = build_context(home / "build")
        subprocess.run([sys.executable, "-m", "venv", str(home / "venv")], check=True)
        python = home / "venv" / "bin" / "python"
        subprocess.run(
            ["sh", str(context.folder / "install-wheelhouse.sh"), str(context.folder / "wheelhouse")],
            check=True,
            env={**os.environ, "PYTHON": str(python)},
            stdin=subprocess.DEVNULL,
            capture_output=True,
        )
        return cls(python, context, home)

    def check(self, cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
        path = self.home / "cases.json"
        path.write_text(json.dumps(cases))
        return json.loads(self.run(str(CHECK), str(path)).stdout)
