"""A simulated Dataflow worker: the image's environment, made here without Docker.

The wheelhouse that `streamforge dataflow build` writes is installed into a fresh virtual
environment with the image's own install script (no package index), so the environment holds
exactly what the image would: Beam and what the job ships, and nothing of the checkout. In
it, for every job as built for Dataflow, every serialized DoFn, CombineFn, window function
and coder is loaded and a few events go through the parse step (tests/support/worker_check.py).
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from beam_pipelines.dataflow.staging import WORKER_EXTRA, worker_requirements
from streamforge.packaging import REPO_ROOT
from tests.support.changes import envelope, order, product
from tests.support.dataflow import ALERTS, BUCKET, JOBS, WAREHOUSE, dataflow_args, dry_run, request_for, transforms
from tests.support.environments import closure
from tests.support.worker import Worker

pytestmark = pytest.mark.slow


def test_the_image_installs_exactly_the_pinned_versions(worker: Worker) -> None:
    installed = json.loads(
        worker.run(
            "-c",
            "import importlib.metadata as m, json; print(json.dumps("
            "{d.metadata['Name']: d.version for d in m.distributions()}))",
        ).stdout
    )
    installed = {
        canonicalize_name(n): v for n, v in installed.items() if canonicalize_name(n) not in ("pip", "setuptools")
    }
    assert installed == worker.context.pins  # everything, and nothing else
    assert (worker.context.folder / "wheelhouse" / "requirements.txt").read_text().splitlines()[1:] == [
        f"{n}=={v}" for n, v in sorted(worker.context.pins.items())
    ]
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    lines = project["dependencies"] + [line for extra in closure(WORKER_EXTRA) for line in extras[extra]]
    for pinned in (Requirement(line) for line in lines if Requirement(line).name != "streamforge"):
        assert installed[canonicalize_name(pinned.name)] == str(pinned.specifier).removeprefix("=="), pinned
    assert worker.context.build_args["BEAM_VERSION"] == installed["apache-beam"]
    # the no-image path pins the same versions for what Beam's own container lacks
    assert all(
        installed[canonicalize_name(Requirement(line).name)] == str(Requirement(line).specifier)[2:]
        for line in worker_requirements()
    )


def _samples(default_run: Path, job: str, streaming: bool, names: list[str]) -> dict[str, list[str]]:
    if job == "cdc":
        step = "CDC/Parse change events/Parse/ParDo(_ParseChange)"
        changes = [
            envelope("products", "u", product(price="40.00"), product(price="35.00"), 10),
            envelope("orders", "c", None, order(), 11),
            b"null",
            b"{broken",
        ]
        return {step: [c.decode() for c in changes]}
    samples = {}
    for stream in ("clickstream", "orders"):
        suffix = (
            f"Parse {stream}/Validate/ParDo(_Validate)"
            if streaming
            else f"Parse {stream}/Validate, drop duplicates/ParDo(_FirstValidOfEachId)"
        )
        if suffix in names:
            lines = (default_run / f"{stream}.jsonl").read_text().splitlines()[:5]
            samples[suffix] = [*lines, '{"event_id": "e-1", "event_time": 5}']
    return samples


def test_a_worker_with_the_image_loads_every_job_and_parses_events(worker: Worker, default_run: Path) -> None:
    cases, expected = [], []
    for job in JOBS:
        for streaming in (False, True):
            submission = dry_run(request_for(job, streaming))
            proto = worker.home / f"{job}-{'streaming' if streaming else 'batch'}.pb"
            proto.write_bytes(submission.job.proto_pipeline.SerializeToString())
            samples = _samples(default_run, job, streaming, list(transforms(submission)))
            cases.append({"proto": str(proto), "samples": samples})
            expected.append(
                (
                    job,
                    streaming,
                    {
                        step: ({"events": 2, "dead_letters": 1} if job == "cdc" else {"events": 5, "dead_letters": 1})
                        for step in samples
                    },
                )
            )
    results = worker.check(cases)
    for (job, streaming, parsed), result in zip(expected, results):
        assert result["failures"] == [], (job, streaming)
        assert result["loaded"]["DoFn"] > 10 and result["loaded"]["Coder"] > 10, (job, streaming)
        assert result["parsed"] == parsed, (job, streaming)
    assert sum(r["loaded"].get("CombineFn", 0) for r in results) > 0


def test_without_streamforge_a_worker_cannot_load_the_job(worker: Worker) -> None:
    """The check can fail: the same job on a worker without the package (as before the image)."""
    submission = dry_run(request_for("all", True))
    proto = worker.home / "bare.pb"
    proto.write_bytes(submission.job.proto_pipeline.SerializeToString())
    worker.run("-m", "pip", "uninstall", "--quiet", "--yes", "streamforge")
    try:
        (result,) = worker.check([{"proto": str(proto), "samples": {}}])
    finally:
        wheel = next((worker.context.folder / "wheelhouse").glob("streamforge-*.whl"))
        worker.run("-m", "pip", "install", "--quiet", "--no-index", "--no-deps", str(wheel))
    assert result["failures"] and all(
        "No module named 'beam_pipelines'" in f or "No module named 'streamforge'" in f for f in result["failures"]
    )


def test_the_images_launcher_builds_a_job_from_template_parameters(worker: Worker) -> None:
    """dataflow/main.py (FLEX_TEMPLATE_PYTHON_PY_FILE) in the image's environment, dry run."""
    launched = worker.run(
        str(worker.context.folder / "main.py"),
        "--job=fraud",
        f"--input={BUCKET}/orders/*.jsonl",
        f"--warehouse={WAREHOUSE}",
        f"--alerts_topic={ALERTS}",
        *dataflow_args(),
    )
    assert "dry run: streamforge-fraud built, nothing submitted" in launched.stderr
    refused = worker.run(
        str(worker.context.folder / "main.py"),
        "--job=fraud",
        f"--input={BUCKET}/orders/*.jsonl",
        "--warehouse=duckdb://w.duckdb",
        *dataflow_args(),
        check=False,
    )
    assert refused.returncode == 2 and "a DuckDB file would be written on the workers' disks" in refused.stderr
