"""Clean virtual environments for the dependency checks: StreamForge's wheel installed with one
extra, as ``pip install 'streamforge[EXTRA]'`` installs it for a user (or a deployable folder's
``requirements.txt``, as Cloud Functions' build installs it), and its entry points run there.

Nothing of the test's own environment leaks in: the processes run outside the checkout with no
PYTHONPATH, so only what pip resolved for that extra can be imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
#: The base install, named like an extra: ``pip install streamforge``.
CORE = "core"


def declared_extras() -> dict[str, list[Requirement]]:
    """``[project.optional-dependencies]`` of pyproject.toml, parsed."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {name: [Requirement(r) for r in reqs] for name, reqs in project["optional-dependencies"].items()}


def closure(extra: str) -> frozenset[str]:
    """The extras ``pip install 'streamforge[EXTRA]'`` installs: itself and the ones it names
    through ``streamforge[...]``, recursively (none for the core)."""
    extras = declared_extras()
    seen: set[str] = set()
    todo = [] if extra == CORE else [extra]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(x for r in extras[name] if r.name == "streamforge" for x in r.extras)
    return frozenset(seen)


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without anything that points Python at other code."""
    environment = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTHON", "VIRTUAL_ENV")) and k not in ("STREAMFORGE_CONFIG", "PIP_REQUIRE_VIRTUALENV")
    }
    environment.update(extra)
    return environment


@dataclass(frozen=True)
class CleanEnvironment:
    """A virtual environment at ``root`` (without pip: this interpreter's pip installs into it)
    and a working folder ``home`` outside the checkout."""

    root: Path
    home: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    def bin(self, name: str) -> Path:
        return self.root / "bin" / name

    @classmethod
    def create(cls, folder: Path) -> CleanEnvironment:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder / "venv")], check=True)
        (folder / "home").mkdir()
        return cls(folder / "venv", folder / "home")

    def install(self, *requirements: str, cwd: Path | None = None) -> None:
        """``pip install REQUIREMENTS`` into this environment, resolved from nothing but them."""
        process = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "--python",
                str(self.python),
                "--disable-pip-version-check",
                "install",
                "--quiet",
                "--no-compile",
                *requirements,
            ],
            cwd=cwd or self.home,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            env=clean_env(),
            timeout=900,
        )
        if process.returncode != 0:
            raise AssertionError(f"pip install {' '.join(requirements)} failed:\n{process.stderr[-4000:]}")

    def run(
        self, *command: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """COMMAND with this environment's ``bin`` first on the PATH; the caller checks the result."""
        path = f"{self.root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
        return subprocess.run(
            [str(c) for c in command],
            cwd=cwd or self.home,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            env=clean_env(PATH=path, **(env or {})),
            timeout=timeout,
        )
