"""Following, draining and cancelling Dataflow jobs: `streamforge dataflow watch|drain|cancel`
as real processes, with the real Dataflow client, against a stand-in API on 127.0.0.1."""

from __future__ import annotations

import signal
import subprocess
import time

from beam_pipelines.runner import pipeline_options, run
from tests.support.cli import STREAMFORGE, entry_point_env, run_entry_point
from tests.support.dataflow import dataflow_args, request_for
from tests.support.dataflow_api import FakeJob, dataflow_api
from tests.support.network import no_network

JOB_ID = "2026-12-02_07_41_05-1234567890123456789"
WHERE = ("--project", "my-proj-123", "--region", "europe-west1")


def _running(**extra) -> FakeJob:
    return FakeJob(JOB_ID, "streamforge-all", ["JOB_STATE_RUNNING"], **extra)


def test_drain_by_name_asks_dataflow_to_drain_the_running_job() -> None:
    finished = FakeJob("2026-12-01_00_00_00-1", "streamforge-all", ["JOB_STATE_DONE"])
    with dataflow_api([finished, _running()]) as (fake, endpoint):
        done = run_entry_point("dataflow", "drain", "streamforge-all", *WHERE, "--endpoint", endpoint)
    assert fake.changes() == [(JOB_ID, "JOB_STATE_DRAINED")]
    assert f"draining {JOB_ID}" in done.stdout


def test_cancel_by_id_and_an_unknown_name_is_an_error() -> None:
    with dataflow_api([_running()]) as (fake, endpoint):
        run_entry_point("dataflow", "cancel", JOB_ID, *WHERE, "--endpoint", endpoint)
        missing = run_entry_point("dataflow", "drain", "streamforge-cdc", *WHERE, "--endpoint", endpoint, check=False)
    assert fake.changes() == [(JOB_ID, "JOB_STATE_CANCELLED")]
    assert missing.returncode == 1
    assert "no running job named streamforge-cdc in project my-proj-123, region europe-west1" in missing.stderr


def test_watch_follows_until_the_job_ends_with_its_counters() -> None:
    job = FakeJob(
        JOB_ID,
        "streamforge-all",
        ["JOB_STATE_RUNNING", "JOB_STATE_RUNNING", "JOB_STATE_DONE"],
        type="JOB_TYPE_BATCH",
        counters={"orders": {"read": 1200, "dead_lettered": 3, "duplicates": 2}, "fraud": {"emitted": 7}},
    )
    with dataflow_api([job]) as (fake, endpoint):
        watched = run_entry_point("dataflow", "watch", JOB_ID, *WHERE, "--endpoint", endpoint, "--every", "0.1")
    lines = watched.stderr.strip().splitlines()
    assert [line.split()[1].rstrip(":") for line in lines] == ["RUNNING", "RUNNING", "DONE"]
    assert "orders read 1,200 dead-lettered 3 duplicates 2; alerts 7" in lines[-1]
    assert fake.changes() == []
    failed = FakeJob(JOB_ID, "streamforge-all", ["JOB_STATE_FAILED"])
    with dataflow_api([failed]) as (_fake, endpoint):
        assert run_entry_point("dataflow", "watch", JOB_ID, *WHERE, "--endpoint", endpoint, check=False).returncode == 1


def test_ctrl_c_while_watching_detaches_and_leaves_the_job_running() -> None:
    with dataflow_api([_running()]) as (fake, endpoint):
        process = subprocess.Popen(
            [
                str(STREAMFORGE),
                "dataflow",
                "watch",
                "streamforge-all",
                *WHERE,
                "--endpoint",
                endpoint,
                "--every",
                "0.2",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=entry_point_env(),
        )
        deadline = time.monotonic() + 60
        while sum(method == "GET" and path.endswith("/metrics") for method, path, _ in fake.requests) < 2:
            assert time.monotonic() < deadline and process.poll() is None, process.communicate()
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "the job keeps running" in err and f"streamforge dataflow drain|cancel {JOB_ID}" in err
    assert fake.changes() == []  # nothing was cancelled or drained


def test_update_replaces_the_running_job_of_the_same_name_with_the_renamed_steps() -> None:
    """--update: Beam looks the stable job name up in Dataflow and sends the rename mapping."""
    request = request_for("all", True)
    with dataflow_api([_running()]) as (fake, endpoint):
        # Beam's Dataflow client speaks REST to an endpoint named localhost
        args = dataflow_args(
            "--update", f"--dataflow_endpoint={endpoint.replace('127.0.0.1', 'localhost')}", "--no_auth"
        )
        with no_network(allow_loopback=True):
            submission = run(request, pipeline_options(request, args))
    assert [(method, path.rsplit("/", 1)[-1]) for method, path, _ in fake.requests] == [("GET", "jobs")]
    assert submission.job.proto.replace_job_id == JOB_ID and submission.job.proto.name == "streamforge-all"
    assert dict(submission.job.proto.transform_name_mapping) == {
        "Sessions/Session windows (30m gap)": "Sessions/Session windows"
    }
