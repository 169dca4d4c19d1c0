"""The program as `pulumi up` runs it, and docs/infra.md's deployment steps as a user types them.

Pulumi's Python host makes the ``main:`` folder (infra/) the working directory and runs it with
``runpy.run_path('.')``, so infra/ is first on ``sys.path``: every infra test runs the program
that way (infra/offline.py, a fresh interpreter under Pulumi's mocks). Here: that the host is
faithful (a module shadowing the standard library breaks the program as it broke `pulumi up`),
that no module of infra/ can shadow another, that the stack's keys are the documented ones, and
the first deployment of docs/infra.md, command by command, from a copy of the checkout.
"""

from __future__ import annotations

import importlib.metadata as metadata
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from infra.offline import ProgramError, run_program
from infra.settings import KEYS
from streamforge.packaging import REPO_ROOT
from tests.support.infra import EXAMPLE_STACK, PROJECT, stack

PROJECT_PACKAGES = {"streamforge", "beam_pipelines", "batch", "infra", "functions", "dataflow", "tests"}


def test_no_module_of_the_program_folder_shadows_another_module() -> None:
    """infra/ is first on sys.path under `pulumi up`: a module there named like one from the
    standard library, an installed package or the project would replace it for every import."""
    taken = set(sys.stdlib_module_names) | set(metadata.packages_distributions()) | PROJECT_PACKAGES
    modules = {p.stem for p in (REPO_ROOT / "infra").glob("*.py")} - {"__init__", "__main__"}
    assert sorted(modules & taken) == []


def _project(folder: Path, *modules: tuple[str, str]) -> Path:
    """A Pulumi project at ``folder``: this Pulumi.yaml and infra/__main__.py, and ``modules``."""
    (folder / "infra").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "Pulumi.yaml", folder / "Pulumi.yaml")
    shutil.copy(REPO_ROOT / "infra" / "__main__.py", folder / "infra" / "__main__.py")
    for name, text in modules:
        (folder / "infra" / name).write_text(text)
    return folder


def test_a_module_shadowing_the_standard_library_breaks_the_program_as_under_pulumi(artifacts, tmp_path) -> None:
    """What `pulumi up` did before infra/secrets.py was renamed: the host reproduces it."""
    shadow = (REPO_ROOT / "infra" / "secret_manager.py").read_text()
    project = _project(tmp_path, ("secrets.py", shadow))
    with pytest.raises(
        ProgramError, match=r"cannot import name '\w+' from partially initialized module 'infra.settings'"
    ):
        run_program(project, *stack(artifacts))


def test_a_misspelt_stack_key_is_refused_with_the_key_it_resembles(artifacts) -> None:
    config, secrets = stack(artifacts)
    config["streamforge:templateDir"] = "dist/dataflow/templates"
    with pytest.raises(ProgramError, match=r"streamforge:templateDir: unknown setting \(did you mean templatesDir\?\)"):
        run_program(REPO_ROOT, config, secrets)


def test_the_documented_keys_are_the_keys_the_program_reads() -> None:
    docs = (REPO_ROOT / "docs" / "infra.md").read_text()
    reference = docs.split("## Configuration reference", 1)[1].split("\n## ", 1)[0]
    documented = {
        key.removeprefix("streamforge:")
        for row in reference.splitlines()
        if row.startswith("| `streamforge:")
        for key in re.findall(r"`([^`]+)`", row.split(" | ")[0])
    }
    assert documented == set(KEYS)
    example = {
        line.split(":")[1].split()[0]
        for line in EXAMPLE_STACK.read_text().splitlines()
        if line.startswith("  streamforge:")
    }
    assert example <= set(KEYS)


# -- docs/infra.md, "First deployment", as written ------------------------------------------------

#: Commands that need Google Cloud (or a Docker build): not run here, and why.
NEEDS_GOOGLE = {
    "gcloud": "Cloud Build builds and pushes the image (no Docker engine or Google Cloud here)",
    "cloud-sql-proxy": "a tunnel to Cloud SQL",
    "PGPASSWORD=...": "runs through that tunnel; tests/cdc/test_setup.py runs `cdc setup` against a local PostgreSQL",
    "make dataflow": "the image's build context; tests/dataflow/test_worker.py builds it and installs it as the image does",
}
#: What a user fills in for the docs' placeholders.
PLACEHOLDERS = {"PROJECT": PROJECT, "DIGEST": "0" * 64}


def _first_deployment() -> list[str]:
    docs = (REPO_ROOT / "docs" / "infra.md").read_text()
    section = docs.split("## First deployment", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    commands, pending = [], ""
    for line in block.splitlines():
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        commands.append(pending + line)
        pending = ""
    return [c for c in commands if shlex.split(c, comments=True)]


def _fresh_copy(target: Path) -> Path:
    """This checkout's files as a clone has them (tracked, and new ones not ignored), as they are now."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = REPO_ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


@pytest.mark.slow
def test_the_first_deployment_of_docs_infra_md_runs_as_written_up_to_google(tmp_path) -> None:
    clone = _fresh_copy(tmp_path / "clone")
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "pulumi").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m tests.support.fake_pulumi "$@"\n')
    (tools / "pulumi").chmod(0o755)
    env = {**os.environ, "PATH": f"{tools}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    ran, skipped = [], []
    for command in _first_deployment():
        words = shlex.split(command, comments=True)
        reason = next((why for start, why in NEEDS_GOOGLE.items() if " ".join(words).startswith(start)), None)
        if reason:
            skipped.append((command, reason))
            continue
        for placeholder, value in PLACEHOLDERS.items():
            command = re.sub(rf"\b{placeholder}\b", value, command)
        process = subprocess.run(
            ["bash", "-c", command], cwd=clone, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL
        )
        assert process.returncode == 0, f"{command}\n{process.stdout[-2000:]}\n{process.stderr[-3000:]}"
        ran.append(command)
    assert [c.split()[0] for c in ran].count("pulumi") >= 8 and len(skipped) == 4, (ran, skipped)

    first, second = (json.loads((clone / ".fake-pulumi" / f"prod-up-{n}.json").read_text()) for n in (1, 2))
    jobs = [r for r in second if r["type"] == "gcp:dataflow/flexTemplateJob:FlexTemplateJob"]
    assert not [r for r in first if r["type"] == "gcp:dataflow/flexTemplateJob:FlexTemplateJob"]
    assert {j["inputs"]["name"] for j in jobs} == {"streamforge-all", "streamforge-cdc"}
    image = f"europe-west1-docker.pkg.dev/{PROJECT}/streamforge/streamforge@sha256:{'0' * 64}"
    assert {j["inputs"]["sdkContainerImage"] for j in jobs} == {image}
    # what the documented commands wrote is what the program uploaded: relative to Pulumi.yaml,
    # although the program runs from infra/
    sources = {
        Path(r["inputs"]["source"]["__file_asset__"])
        for r in second
        if r["type"] == "gcp:storage/bucketObject:BucketObject"
    }
    assert sources and all(source.is_relative_to(clone / "dist") and source.is_file() for source in sources)
    assert {s.relative_to(clone / "dist").parts[0] for s in sources} == {"dataflow", "functions", "batch"}
    # the secrets the docs set are the ones the program needs, and none is in the clear in the stack file
    stack_file = (clone / "Pulumi.prod.yaml").read_text()
    assert "hooks.example.com/risk" not in stack_file and stack_file.count("secure:") == 5
