"""`streamforge status` read through a pipe or a log, as a script or `tee` reads it: every path
and address whole, never cut to the 80 columns a terminal-less Rich table assumes."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.support.cli import run_entry_point


def test_status_keeps_whole_values_in_a_pipe(tmp_path: Path) -> None:
    workdir = tmp_path / ("a-folder-with-a-long-name-" * 4) / "live"
    log = workdir / "logs" / "postgres.log"
    log.parent.mkdir(parents=True)
    address = "postgresql://postgres@127.0.0.1:54321/shop"
    state = {
        "pid": os.getpid(),  # a running process: `status` shows only a live run
        "project": "streamforge-local",
        "services": {"postgres": {"pid": os.getpid(), "address": address, "log": str(log)}},
        "urls": {"dashboard": "http://127.0.0.1:8050/"},
    }
    (workdir / "live.json").write_text(json.dumps(state))
    output = run_entry_point("status", "--workdir", str(workdir)).stdout  # stdout is a pipe
    assert str(log) in output and address in output
