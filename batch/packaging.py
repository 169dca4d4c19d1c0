"""The job's files for Dataproc Serverless: the main file and one zip for ``--py-files``.

The runtime provides PySpark (and the BigQuery connector) and nothing of ours, so the zip
carries the ``batch`` package and the standard-library parts of ``streamforge`` it imports:
the config and its defaults, the schema errors and cross-field rules, and the ``.avsc`` files.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

__all__ = ["DATAPROC_RUNTIME", "MAIN_FILE", "MANIFEST", "ZIP_CONTENTS", "ZIP_NAME", "manifest", "package"]

ROOT = Path(__file__).resolve().parents[1]
MAIN_FILE = "daily_metrics.py"
ZIP_NAME = "streamforge_batch.zip"
MANIFEST = "manifest.json"
#: The Dataproc Serverless runtime the job is submitted with (Spark 4, like the local pyspark).
DATAPROC_RUNTIME = "3.0"
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
    "streamforge/schemas/daily_tables.py",
    "streamforge/schemas/avro/*.avsc",
)


def manifest() -> dict[str, Any]:
    """How to submit the packaged job, for whatever schedules it (the infrastructure program
    reads it from ``manifest.json``): the files, the runtime, and the arguments of a daily run
    with ``{date}``, ``{warehouse}`` (bigquery://PROJECT.DATASET) and ``{bucket}`` to fill in.
    A reconciliation MISMATCH exits 3, which fails the Dataproc batch."""
    return {
        "main_python_file": MAIN_FILE,
        "python_files": [ZIP_NAME],
        "runtime_version": DATAPROC_RUNTIME,
        "args": [
            "--date",
            "{date}",
            "--input",
            "{warehouse}",
            "--output",
            "{warehouse}",
            "--reconcile-with",
            "{warehouse}",
            "--temporary-gcs-bucket",
            "{bucket}",
        ],
    }


def package(output: Path) -> tuple[Path, Path]:
    """Writes ``output/daily_metrics.py``, ``output/streamforge_batch.zip`` and ``output/manifest.json``;
    returns the first two."""
    output.mkdir(parents=True, exist_ok=True)
    (output / MANIFEST).write_text(json.dumps(manifest(), indent=2) + "\n", encoding="utf-8")
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
