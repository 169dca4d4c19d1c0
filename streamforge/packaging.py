"""Building the StreamForge wheel: what the deployables carry (the Cloud Functions' folders,
the Dataflow image and the packages staged for Dataflow workers).

A wheel is built from a checkout (``pip wheel --no-deps``): it needs ``pyproject.toml``, which
an installed package does not have.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from streamforge import __version__

__all__ = ["REPO_ROOT", "WHEEL_NAME", "PackagingError", "build_wheel", "checkout"]

#: The checkout this package was installed from (an editable install), if it was.
REPO_ROOT = Path(__file__).resolve().parents[1]
WHEEL_NAME = f"streamforge-{__version__}-py3-none-any.whl"


class PackagingError(RuntimeError):
    """Something cannot be packaged (the message says why)."""


def checkout() -> Path:
    """The StreamForge checkout this code runs from; PackagingError when it runs from an install."""
    if not (REPO_ROOT / "pyproject.toml").is_file():
        raise PackagingError(
            f"no pyproject.toml in {REPO_ROOT}: packaging needs the StreamForge checkout "
            "(this StreamForge is an installed package)"
        )
    return REPO_ROOT


def build_wheel(directory: Path) -> Path:
    """``pip wheel`` of this checkout (no dependencies) into ``directory``."""
    root = checkout()
    directory.mkdir(parents=True, exist_ok=True)
    process = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(directory), str(root)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    wheel = directory / WHEEL_NAME
    if process.returncode != 0 or not wheel.is_file():
        raise PackagingError(f"building {WHEEL_NAME} failed:\n{process.stderr[-2000:]}")
    return wheel
