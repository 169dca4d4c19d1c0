"""What Dataflow workers need besides Beam: the StreamForge package and its dependencies, at
the versions this environment runs (the tested ones).

The Dataflow documentation gives two ways, and both work:

- A custom SDK container image with everything preinstalled (image.py, ``dataflow/Dockerfile``),
  named by ``--sdk_container_image``: the production way. Workers need no package index
  (private-IP workers without NAT are the norm) and start faster.
- Without an image, ``streamforge run --runner DataflowRunner`` stages the StreamForge wheel
  (built from this checkout) and a requirements file pinning what Beam's default container
  lacks. Beam downloads those packages at submission and stages them; the workers install
  them from the staged files when they start.

Nothing is staged when the command line already says how workers get the code (an image, a
setup file, extra packages or a requirements file). The main session is never pickled: every
DoFn lives in an importable module.
"""

from __future__ import annotations

import importlib.metadata as metadata
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions, TestOptions, WorkerOptions
from apache_beam.runners.portability.stager import SKIP_REQUIREMENTS_CACHE
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from streamforge.extras import declared
from streamforge.packaging import PackagingError, build_wheel

__all__ = [
    "DISTRIBUTION",
    "WORKER_EXTRA",
    "installed_closure",
    "needs_package",
    "staged_package",
    "worker_requirements",
]

DISTRIBUTION = "streamforge"
#: The extra of pyproject.toml that lists what the pipelines need on a worker.
WORKER_EXTRA = "dataflow"
#: What Beam's own SDK container provides: its closure is not pinned again for the workers.
BEAM = "apache-beam"


def installed_closure(name: str, extras: Iterable[str] = ()) -> dict[str, str]:
    """Canonical name -> installed version of ``name[extras]`` and everything it requires,
    with environment markers evaluated here (Linux, CPython 3.11 is what the workers run)."""
    found: dict[str, str] = {}
    pending: list[tuple[str, frozenset[str]]] = [(name, frozenset(extras))]
    expanded: set[tuple[str, frozenset[str]]] = set()
    while pending:
        current, wanted = pending.pop()
        key = canonicalize_name(current)
        if (key, wanted) in expanded:
            continue
        expanded.add((key, wanted))
        try:
            dist = metadata.distribution(current)
        except metadata.PackageNotFoundError:
            raise PackagingError(
                f"{current} is required but not installed: pip install 'streamforge[{WORKER_EXTRA}]'"
            ) from None
        found[key] = dist.version
        for line in dist.requires or ():
            requirement = Requirement(line)
            marker = requirement.marker
            if marker is not None and not any(marker.evaluate({"extra": extra}) for extra in (*wanted, "")):
                continue
            pending.append((requirement.name, frozenset(requirement.extras)))
    return found


def worker_requirements() -> list[str]:
    """``name==version`` lines for workers on Beam's default container: StreamForge's
    dependencies (core and the worker extra) and theirs, except Beam and what Beam brings
    (unless StreamForge declares it too)."""
    wanted = installed_closure(DISTRIBUTION, [WORKER_EXTRA])
    beam = installed_closure(BEAM, ["gcp"])
    direct = {canonicalize_name(name) for name in declared(WORKER_EXTRA)}
    keep = {n for n in wanted if n not in beam or n in direct} - {canonicalize_name(DISTRIBUTION), BEAM}
    return [f"{n}=={wanted[n]}" for n in sorted(keep)]


def needs_package(options: PipelineOptions) -> bool:
    """True when nothing on the command line gives the workers StreamForge."""
    setup, worker = options.view_as(SetupOptions), options.view_as(WorkerOptions)
    return not (
        worker.sdk_container_image
        or setup.setup_file
        or setup.extra_packages
        or setup.requirements_file
        or setup.prebuild_sdk_container_engine
    )


@contextmanager
def staged_package(options: PipelineOptions) -> Iterator[list[str]]:
    """While the job is built and submitted: the StreamForge wheel and the pinned worker
    requirements added to ``options`` when the workers would otherwise lack them. Yields
    what was added (file paths), empty when nothing was needed.

    A dry run stages nothing, so Beam is told not to download the requirements."""
    if not needs_package(options):
        yield []
        return
    setup = options.view_as(SetupOptions)
    with tempfile.TemporaryDirectory(prefix="sf-dataflow-") as tmp:
        try:
            wheel = build_wheel(Path(tmp))
        except PackagingError as exc:
            raise PackagingError(
                f"{exc}. Dataflow workers need StreamForge: build the image "
                "(streamforge dataflow build) and pass --sdk_container_image=IMAGE, or pass "
                "--extra_package=WHEEL and --requirements_file=FILE"
            ) from None
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text("".join(line + "\n" for line in worker_requirements()), encoding="utf-8")
        setup.extra_packages = [str(wheel)]
        setup.requirements_file = str(requirements)
        if options.view_as(TestOptions).dry_run and setup.requirements_cache is None:
            setup.requirements_cache = SKIP_REQUIREMENTS_CACHE
        yield [str(wheel), str(requirements)]
