"""The Flex Templates' launcher: template parameters -> a job request -> submitted to Dataflow.

Dataflow runs this in the template's image (``dataflow/main.py`` calls ``main``) with the
template's parameters and the pipeline options as ``--name=value`` arguments. It parses
exactly the parameters of templates.py, builds the request through the library (the same
calls as ``streamforge run``), submits the job and returns without waiting: a Flex Template
launcher must exit once the job is submitted.

One image serves both templates (one launcher file): the analytics template's ``job``
parameter is required, the CDC template has none, so ``--job`` says which template launched.
The workers run the same image: the spec sets ``sdkContainerImage``; without it the launcher
refuses to submit, since the workers would have no StreamForge to run.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import WorkerOptions

from beam_pipelines.common.io import SpecError
from beam_pipelines.dataflow.templates import TEMPLATES, Template
from beam_pipelines.requests import Request, analytics_request, cdc_request
from beam_pipelines.runner import Submission, pipeline_options, submit
from streamforge.config import Config, ConfigError, load_config

__all__ = ["launch", "main", "parse", "request_from", "template_of"]

_LOG = logging.getLogger("streamforge.launcher")


def parse(template: Template, argv: Sequence[str]) -> tuple[dict[str, str | None], list[str]]:
    """The template's parameters (by name; None when not given) and the rest (Beam's options)."""
    parser = argparse.ArgumentParser(prog=f"streamforge-{template.name}-launcher", add_help=False)
    for parameter in template.parameters:
        parser.add_argument(f"--{parameter.name}", default=parameter.default)
    known, rest = parser.parse_known_args(list(argv))
    return vars(known), rest


def _config(url: str | None) -> Config:
    """The settings: the built-in defaults, overlaid by a TOML file in Cloud Storage."""
    if url is None:
        return load_config(None)
    with FileSystems.open(url) as remote, tempfile.TemporaryDirectory(prefix="sf-config-") as tmp:
        local = Path(tmp) / "streamforge.toml"
        local.write_bytes(remote.read())
        try:
            return load_config(local)
        except ConfigError as exc:
            raise SpecError(str(exc).replace(str(local), url)) from None


def request_from(template: Template, values: dict[str, str | None]) -> Request:
    """The job request a template's parameters describe (SpecError saying which is wrong)."""
    for parameter in template.parameters:
        if not parameter.optional and values.get(parameter.name) is None:
            raise SpecError(f"template {template.name}: the parameter {parameter.name} is required ({parameter.help})")
    config = _config(values.get("config"))
    if template.name == "cdc":
        return cdc_request(config, input_url=values["input"], warehouse=values["warehouse"])
    raw = values.get("raw_events") or "false"
    if raw not in ("true", "false"):
        raise SpecError(f"raw_events {raw}: expected true or false")
    return analytics_request(
        values["job"],
        config,
        warehouse=values["warehouse"],
        input_url=values["input"],
        clickstream=values["clickstream"],
        orders=values["orders"],
        alerts_topic=values["alerts_topic"],
        dead_letter_topic=values["dead_letter_topic"],
        catalog=values["catalog"],
        raw_events=raw == "true",
    )


def template_of(argv: Sequence[str]) -> Template:
    """The analytics template when ``--job`` is given, else the CDC template."""
    peek = argparse.ArgumentParser(add_help=False)
    peek.add_argument("--job")
    job = peek.parse_known_args(list(argv))[0].job
    return TEMPLATES["cdc" if job in (None, "cdc") else "analytics"]


def launch(argv: Sequence[str]) -> Submission:
    """Parse, build and submit; SpecError when a parameter is wrong."""
    template = template_of(argv)
    values, beam_args = parse(template, argv)
    request = request_from(template, values)
    if not any(arg == "--runner" or arg.startswith("--runner=") for arg in beam_args):
        beam_args = ["--runner=DataflowRunner", *beam_args]  # a template's jobs run on Dataflow
    options = pipeline_options(request, beam_args)
    if not options.view_as(WorkerOptions).sdk_container_image:
        raise SpecError(
            "no sdk_container_image: the workers would have no StreamForge. The template spec sets "
            "defaultEnvironment.sdkContainerImage (streamforge dataflow template); or pass "
            "--parameters sdk_container_image=IMAGE"
        )
    return submit(request, options)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: the template's parameters and Beam's options. Exit 0 once the job is
    submitted, or written to ``--template_location`` (as Google's Flex Template launcher asks),
    or with --dry_run=True built; 2 on a bad parameter."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        submission = launch(list(sys.argv[1:] if argv is None else argv))
    except (SpecError, ConfigError) as exc:
        _LOG.error("%s", exc)
        return 2
    if submission.template_location:
        _LOG.info("%s written to %s for Dataflow to start", submission.name, submission.template_location)
    elif submission.job_id is None:
        _LOG.info("dry run: %s built, nothing submitted", submission.name)
    else:
        _LOG.info("submitted %s as job %s: %s", submission.name, submission.job_id, submission.console_url)
    return 0
