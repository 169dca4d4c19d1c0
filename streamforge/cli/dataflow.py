"""``streamforge dataflow build|template|watch|drain|cancel``: the jobs' Dataflow image and
Flex Templates, and the jobs once they run (docs/dataflow.md)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from beam_pipelines.dataflow.control import ControlError, DataflowJobs, JobStatus, follow
from beam_pipelines.dataflow.image import build_context
from beam_pipelines.dataflow.templates import TEMPLATES, metadata, spec
from streamforge.packaging import PackagingError
from streamforge.shutdown import stop_on_signals

__all__ = ["app", "follow_job"]

app = typer.Typer(
    help="Dataflow: build the image and the Flex Templates; watch, drain or cancel a running job.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

_PROJECT = typer.Option(
    ..., "--project", envvar="GOOGLE_CLOUD_PROJECT", metavar="PROJECT", help="Google Cloud project."
)
_REGION = typer.Option(..., "--region", metavar="REGION", help="The job's region, e.g. europe-west1.")
_JOB = typer.Argument(..., metavar="JOB", help="A job id, or the name of a running job (e.g. streamforge-all).")
# A local Dataflow API stand-in (tests); calls to a loopback endpoint carry no credentials.
_ENDPOINT = typer.Option(None, "--endpoint", hidden=True)


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@app.command("build")
def build(
    output: Path = typer.Option(
        Path("dist/dataflow"), "--output", "-o", metavar="DIR", help="Where the build context goes."
    ),
) -> None:
    """Write the Dataflow image's build context: a wheelhouse of StreamForge and every runtime
    dependency at the versions installed here, the Dockerfile and cloudbuild.yaml. Then build
    the image with Cloud Build or Docker (the commands are printed)."""
    try:
        context = build_context(output)
    except PackagingError as exc:
        raise _fail(str(exc), 1) from None
    image = "REGION-docker.pkg.dev/PROJECT/REPOSITORY/streamforge:TAG"
    typer.echo(
        f"{context.folder}: {len(context.pins)} pinned packages in wheelhouse/ "
        f"(apache-beam {context.pins['apache-beam']}, streamforge {context.pins['streamforge']})"
    )
    typer.echo(f"  Cloud Build: {context.cloud_build_command(image)}")
    typer.echo(f"  Docker:      {context.docker_command(image)}")
    typer.echo(f"  then:        streamforge dataflow template --image {image}")


@app.command("template")
def template(
    image: str = typer.Option(
        ...,
        "--image",
        metavar="IMAGE",
        help="The image built from `streamforge dataflow build` (by digest for a pinned job).",
    ),
    names: Optional[List[str]] = typer.Argument(None, metavar="[analytics|cdc]...", help="Templates [default: both]."),
    output: Path = typer.Option(Path("dist/dataflow/templates"), "--output", "-o", metavar="DIR"),
) -> None:
    """Write each Flex Template's spec file (NAME.json: upload it to Cloud Storage) and its
    metadata (NAME-metadata.json, for `gcloud dataflow flex-template build`)."""
    unknown = [n for n in names or () if n not in TEMPLATES]
    if unknown:
        raise _fail(f"unknown template {', '.join(unknown)}: choose from {', '.join(TEMPLATES)}")
    output.mkdir(parents=True, exist_ok=True)
    for name in names or list(TEMPLATES):
        chosen = TEMPLATES[name]
        spec_file, metadata_file = output / f"{name}.json", output / f"{name}-metadata.json"
        spec_file.write_text(json.dumps(spec(chosen, image), indent=2) + "\n", encoding="utf-8")
        metadata_file.write_text(json.dumps(metadata(chosen), indent=2) + "\n", encoding="utf-8")
        typer.echo(
            f"{spec_file}  ({len(chosen.parameters)} parameters: {', '.join(p.name for p in chosen.parameters)})"
        )
        typer.echo(f"  upload: gcloud storage cp {spec_file} gs://BUCKET/templates/{name}.json")
        typer.echo(
            f"  or:     gcloud dataflow flex-template build gs://BUCKET/templates/{name}.json --image {image} "
            f"--sdk-language PYTHON --metadata-file {metadata_file}"
        )


def _jobs(project: str, region: str, endpoint: Optional[str]) -> DataflowJobs:
    try:
        return DataflowJobs(project, region, endpoint=endpoint)
    except ControlError as exc:
        raise _fail(str(exc), 1) from None


def _line(status: JobStatus) -> str:
    parts = []
    for stream in ("clickstream", "orders"):
        c = status.counters.get(stream)
        if c:
            parts.append(
                f"{stream} read {c.get('read', 0):,} dead-lettered {c.get('dead_lettered', 0):,} "
                f"duplicates {c.get('duplicates', 0):,}"
            )
    cdc = status.counters.get("cdc")
    if cdc:
        parts.append(
            f"changes {cdc.get('changes', 0):,} dead-lettered {cdc.get('dead_lettered', 0):,} "
            f"redelivered {cdc.get('duplicates', 0):,}"
        )
    fraud = status.counters.get("fraud")
    if fraud:
        parts.append(f"alerts {fraud.get('emitted', 0):,}")
    return f"{time.strftime('%H:%M:%S')} {status.state.removeprefix('JOB_STATE_')}" + (
        f": {'; '.join(parts)}" if parts else ""
    )


def follow_job(jobs: DataflowJobs, job_id: str, console: Console, every_s: float = 15.0) -> None:
    """Print the job's state and counters until it ends; Ctrl-C only stops following."""
    status = None
    with stop_on_signals() as stop:
        for status in follow(jobs, job_id, every_s=every_s, should_stop=stop):
            console.print(_line(status), soft_wrap=True)
    if status is not None and not status.terminal:
        console.print(
            f"stopped following {status.name} ({job_id}); the job keeps running "
            f"(streamforge dataflow drain|cancel {job_id} --project {jobs.project} --region {jobs.region})",
            soft_wrap=True,
        )
    elif status is not None and status.state == "JOB_STATE_FAILED":
        raise typer.Exit(1)


@app.command("watch")
def watch(
    job: str = _JOB,
    project: str = _PROJECT,
    region: str = _REGION,
    every: float = typer.Option(15.0, metavar="SECONDS", help="How often to ask."),
    endpoint: Optional[str] = _ENDPOINT,
) -> None:
    """Follow a job's state and counters until it ends (exit 1 if it failed). Ctrl-C stops
    following and leaves the job running."""
    jobs = _jobs(project, region, endpoint)
    try:
        follow_job(jobs, jobs.resolve(job), Console(stderr=True), every_s=every)
    except ControlError as exc:
        raise _fail(str(exc), 1) from None


def _request(job: str, project: str, region: str, endpoint: Optional[str], drain_it: bool) -> str:
    jobs = _jobs(project, region, endpoint)
    try:
        job_id = jobs.resolve(job)
        (jobs.drain if drain_it else jobs.cancel)(job_id)
    except ControlError as exc:
        raise _fail(str(exc), 1) from None
    return job_id


@app.command("drain")
def drain(job: str = _JOB, project: str = _PROJECT, region: str = _REGION, endpoint: Optional[str] = _ENDPOINT) -> None:
    """Drain a streaming job: it stops reading, finishes what is in flight (every open window
    fires), then stops. Nothing read is lost; unread messages stay in their subscriptions."""
    job_id = _request(job, project, region, endpoint, drain_it=True)
    typer.echo(f"draining {job_id} (streamforge dataflow watch {job_id} --project {project} --region {region})")


@app.command("cancel")
def cancel(
    job: str = _JOB, project: str = _PROJECT, region: str = _REGION, endpoint: Optional[str] = _ENDPOINT
) -> None:
    """Cancel a job now: what is in flight (open windows, buffered state) is lost."""
    typer.echo(f"cancelling {_request(job, project, region, endpoint, drain_it=False)}")
