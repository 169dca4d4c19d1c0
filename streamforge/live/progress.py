"""The jobs' progress files: what `streamforge run --progress-file` keeps, and `up`, `status`
and the dashboard read. One JSON object: ``at`` (when written, seconds since the epoch) and
``inputs``: by input path, ``pulled``, ``duplicates``, ``acked`` (taken by the job),
``watermark_ms`` and ``newest_ms`` (event time, ms since the epoch, or null)."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

__all__ = ["JobProgress", "read_job_progress", "write_job_progress"]


@dataclass(frozen=True)
class JobProgress:
    at: float
    pulled: int
    acked: int
    watermark_ms: int | None  # the lowest of the inputs' watermarks
    acked_by_input: dict[str, int] = field(default_factory=dict)


def write_job_progress(path: Path, inputs: Mapping[str, Mapping[str, Any]]) -> None:
    """Replaced atomically: a reader never sees half a file."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps({"at": time.time(), "inputs": {p: dict(c) for p, c in inputs.items()}}))
    os.replace(partial, path)


def read_job_progress(path: Path) -> JobProgress | None:
    """The job's totals over its inputs; None before the job wrote its first file."""
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    inputs = data["inputs"].values()
    marks = [i["watermark_ms"] for i in inputs if i["watermark_ms"] is not None]
    return JobProgress(
        data["at"],
        sum(i["pulled"] for i in inputs),
        sum(i["acked"] for i in inputs),
        min(marks) if marks else None,
        {path: i["acked"] for path, i in data["inputs"].items()},
    )
