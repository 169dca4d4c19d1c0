"""The job as Dataproc Serverless runs it: the main file with the zip on the path, and nothing of
ours installed — not fastavro or orjson either, which the runtime does not have."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import pytest

from tests.support.batch import DAYS
from tests.support.cli import entry_point_env, run_entry_point

pytestmark = pytest.mark.slow

BOOTSTRAP = """
import json, runpy, sys
sys.modules["fastavro"] = sys.modules["orjson"] = None   # absent on the Dataproc runtime
zip_path, main = sys.argv[1], sys.argv[2]
sys.path.insert(0, zip_path)
sys.argv = [main] + sys.argv[3:]
try:
    runpy.run_path(main, run_name="__main__")
except SystemExit as exit:
    import batch, streamforge
    print(json.dumps({"code": exit.code, "batch": batch.__file__, "streamforge": streamforge.__file__}))
"""


def test_the_packaged_job_runs_from_its_zip_alone(night_run, tmp_path) -> None:
    listing = run_entry_point("batch", "package", "--output", str(tmp_path / "dist")).stdout
    main, archive = tmp_path / "dist" / "daily_metrics.py", tmp_path / "dist" / "streamforge_batch.zip"
    assert "gcloud dataproc batches submit pyspark" in listing
    with zipfile.ZipFile(archive) as zf:
        names = set(zf.namelist())
    assert {
        "batch/daily_metrics.py",
        "streamforge/config/defaults.toml",
        "streamforge/schemas/rules.py",
        "streamforge/schemas/avro/order_event.v1.avsc",
    } <= names
    assert not any(n.startswith(("streamforge/simulator", "streamforge/cli", "beam_pipelines")) for n in names)
    process = subprocess.run(
        [
            sys.executable,
            "-c",
            BOOTSTRAP,
            str(archive),
            str(main),
            "--date",
            DAYS[0],
            "--input",
            f"file://{night_run}",
            "--output",
            f"file://{tmp_path / 'out'}",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        env=entry_point_env(),
        timeout=300,
    )
    last = json.loads(process.stdout.strip().splitlines()[-1])
    assert last["code"] == 0, process.stderr[-3000:]
    assert last["batch"].startswith(str(archive)) and last["streamforge"].startswith(str(archive))
    summary = json.loads(process.stdout[process.stdout.index("{") : process.stdout.rindex("\n{")])
    assert summary["rows_written"]["daily_revenue"] == 1 and summary["counts"]["orders"]["rejected"] > 0
