"""What ``pulumi up`` deploys but does not build: read from the folders the CLI writes.

- ``streamforge dataflow template --image IMAGE@sha256:...`` -> ``<templates_dir>/<name>.json``:
  the Flex Template specs; their image is referenced by digest (a tag could move under a
  running job) and their parameters are what the jobs may pass (``check_parameters``);
- ``streamforge functions package`` -> ``<functions_dir>/<name>.zip``;
- ``streamforge batch package`` -> ``<batch_dir>/manifest.json`` and the files it names.

A missing or wrong artifact stops the program with the command that makes it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from infra.settings import SettingsError

__all__ = [
    "BatchPackage",
    "FlexTemplate",
    "check_parameters",
    "content_name",
    "function_archive",
    "read_batch_package",
    "read_template",
]

_DIGEST = re.compile(r"^[a-z0-9.-]+-docker\.pkg\.dev/[^@\s]+@sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class FlexTemplate:
    name: str
    path: Path
    spec: dict[str, Any]

    @property
    def image(self) -> str:
        return self.spec["image"]

    @property
    def parameters(self) -> dict[str, dict[str, Any]]:
        return {p["name"]: p for p in self.spec["metadata"]["parameters"]}


@dataclass(frozen=True)
class BatchPackage:
    directory: Path
    manifest: dict[str, Any]

    @property
    def files(self) -> list[Path]:
        return [self.directory / name for name in (self.manifest["main_python_file"], *self.manifest["python_files"])]


def read_template(directory: Path, name: str) -> FlexTemplate:
    path = directory / f"{name}.json"
    make = f"run `streamforge dataflow template --image REGION-docker.pkg.dev/PROJECT/REPO/IMAGE@sha256:... --output {directory}`"
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError(f"{path}: no Flex Template spec: {make} (or set streamforge:deployJobs false)") from None
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{path}: not JSON ({exc}): {make}") from None
    if not isinstance(spec, dict) or "metadata" not in spec or "image" not in spec:
        raise SettingsError(f"{path}: not a Flex Template spec: {make}")
    if not _DIGEST.match(spec["image"]):
        raise SettingsError(
            f"{path}: image {spec['image']!r} is not an Artifact Registry image by digest "
            "(REGION-docker.pkg.dev/...@sha256:<64 hex>): a tag can move under a running job; " + make
        )
    return FlexTemplate(name, path, spec)


def check_parameters(template: FlexTemplate, parameters: Mapping[str, str]) -> dict[str, str]:
    """``parameters`` if the template declares each, each matches its regexes, and every
    required one is given; else SettingsError naming the parameter."""
    declared = template.parameters
    for name, value in parameters.items():
        if name not in declared:
            raise SettingsError(
                f"{template.path}: the {template.name} template has no parameter {name!r} "
                f"(it has {', '.join(sorted(declared))}): rebuild the template or update infra"
            )
        for regex in declared[name].get("regexes", ()):
            if not re.match(regex, value):
                raise SettingsError(f"{template.name} template parameter {name}={value!r} does not match {regex}")
    missing = sorted(n for n, p in declared.items() if not p.get("isOptional", True) and n not in parameters)
    if missing:
        raise SettingsError(f"{template.name} template: required parameter(s) {', '.join(missing)} not given")
    return dict(parameters)


def read_batch_package(directory: Path) -> BatchPackage:
    path = directory / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        raise SettingsError(f"{path}: no batch package: run `streamforge batch package --output {directory}`") from None
    package = BatchPackage(directory, manifest)
    for file in package.files:
        if not file.is_file():
            raise SettingsError(
                f"{file}: missing from the batch package: run `streamforge batch package --output {directory}`"
            )
    return package


def function_archive(directory: Path, name: str) -> Path:
    archive = directory / f"{name}.zip"
    if not archive.is_file():
        raise SettingsError(f"{archive}: no function package: run `streamforge functions package --output {directory}`")
    return archive


def content_name(path: Path, folder: str) -> str:
    """``folder/<stem>-<sha256 prefix><suffix>``: a new content is a new object, so whatever
    reads it (a function's build, the workflow) sees the change and redeploys."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return f"{folder}/{path.stem}-{digest}{path.suffix}"
