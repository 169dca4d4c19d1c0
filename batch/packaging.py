"""The job's files for Dataproc Serverless: the main file and one zip for ``--py-files``.

The runtime provides PySpark (and the BigQuery connector) and nothing of ours, so the zip
carries the ``batch`` package and the standard-library parts of ``streamforge`` it imports:
the config and its defaults, the schema errors and cross-field rules, and the ``.avsc`` files.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

__all__ = ["MAIN_FILE", "ZIP_NAME", "ZIP_CONTENTS", "package"]

ROOT = Path(__file__).resolve().parents[1]
MAIN_FILE = "daily_metrics.py"
ZIP_NAME = "streamforge_batch.zip"
#: Paths below the checkout, globs allowed.
ZIP_CONTENTS = (
    "batch/*.py",
    "streamforge/__init__.py",
    "streamforge/timeutil.py",
    "streamforge/transport.py",
    "streamforge/config/__init__.py",
    "streamforge/config/defaults.toml",
    "streamforge/schemas/__init__.py",
    "streamforge/schemas/errors.py",
    "streamforge/schemas/rules.py",
    "streamforge/schemas/avro/*.avsc",
)


def package(output: Path) -> tuple[Path, Path]:
    """Writes ``output/daily_metrics.py`` and ``output/streamforge_batch.zip``; returns both."""
    output.mkdir(parents=True, exist_ok=True)
    main = output / MAIN_FILE
    shutil.copy2(ROOT / "batch" / MAIN_FILE, main)
    archive = output / ZIP_NAME
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for pattern in ZIP_CONTENTS:
            matches = sorted(ROOT.glob(pattern))
            if not matches:
                raise FileNotFoundError(f"{pattern}: nothing to package under {ROOT}")
            for path in matches:
                zf.write(path, path.relative_to(ROOT).as_posix())
    return main, archive
