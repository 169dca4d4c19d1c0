"""The Dataflow image's build context: ``streamforge dataflow build``.

``build_context`` writes, into one folder, everything ``docker build`` or Cloud Build needs:

- ``wheelhouse/``: the StreamForge wheel and every runtime dependency of its ``dataflow``
  extra as wheels, at exactly the versions installed here (the ones the tests ran: they are
  pip's constraints), and ``wheelhouse/requirements.txt`` naming each ``name==version``;
- ``Dockerfile``, ``install-wheelhouse.sh`` and ``main.py`` from ``dataflow/``;
- ``cloudbuild.yaml`` with the build arguments: Beam's version from pyproject.toml (through
  the installed metadata), the Python version and the launcher base image from here, and
  the folder for the Kafka IO expansion service's jar from common/kafka_io.py. The image
  adds Java and that jar for the launcher (Kafka inputs): the build needs the internet.

Wheels of packages with compiled code must fit the image (Linux x86_64, CPython 3.11, glibc
of Debian 12), so the wheelhouse is built on such a machine, or inside the Beam SDK image.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name, parse_wheel_filename

from beam_pipelines.common.kafka_io import IMAGE_JAR_DIR
from beam_pipelines.dataflow.staging import DISTRIBUTION, WORKER_EXTRA, installed_closure
from streamforge.packaging import PackagingError, checkout

__all__ = ["LAUNCHER_IMAGE", "PYTHON_VERSION", "BuildContext", "beam_image", "build_args", "build_context"]

#: The image's Python: the Beam SDK image and the launcher base image are chosen by it.
PYTHON_VERSION = "3.11"
#: Google's Flex Template launcher base image (only its launcher binary is copied), pinned.
LAUNCHER_IMAGE = (
    f"gcr.io/dataflow-templates-base/python{PYTHON_VERSION.replace('.', '')}-template-launcher-base:20230622_RC00"
)
#: The files of dataflow/ that go into the build context.
CONTEXT_FILES = ("Dockerfile", "install-wheelhouse.sh", "main.py")


@dataclass(frozen=True)
class BuildContext:
    folder: Path
    pins: dict[str, str]  # canonical name -> version: what the image installs
    build_args: dict[str, str]

    def docker_command(self, image: str) -> str:
        args = " ".join(f"--build-arg {k}={v}" for k, v in self.build_args.items())
        return f"docker build {args} -t {image} {self.folder}"

    def cloud_build_command(self, image: str) -> str:
        return (
            f"gcloud builds submit {self.folder} --config {self.folder / 'cloudbuild.yaml'} "
            f"--substitutions _IMAGE={image}"
        )


def beam_image(beam_version: str) -> str:
    return f"apache/beam_python{PYTHON_VERSION}_sdk:{beam_version}"


def build_args(pins: dict[str, str]) -> dict[str, str]:
    """The Dockerfile's build arguments: Beam's version as pinned (pyproject.toml, installed here),
    and where the image keeps the Kafka IO expansion service's jar (kafka_io.py looks there)."""
    return {
        "BEAM_VERSION": pins["apache-beam"],
        "PYTHON_VERSION": PYTHON_VERSION,
        "LAUNCHER_IMAGE": LAUNCHER_IMAGE,
        "KAFKA_JAR_DIR": IMAGE_JAR_DIR,
    }


def _check_host(beam_version: str) -> None:
    here = (
        platform.system(),
        platform.machine(),
        platform.python_implementation(),
        f"{sys.version_info[0]}.{sys.version_info[1]}",
    )
    if here[0] != "Linux" or here[1] not in ("x86_64", "AMD64") or here[2] != "CPython" or here[3] != PYTHON_VERSION:
        raise PackagingError(
            f"this is {' '.join(here)}; the wheelhouse's compiled wheels must fit the image (Linux "
            f"x86_64, CPython {PYTHON_VERSION}): run the command on such a machine, or inside "
            f"{beam_image(beam_version)}"
        )


def _pins_of(wheelhouse: Path) -> dict[str, str]:
    pins = {}
    for wheel in sorted(wheelhouse.glob("*.whl")):
        name, version, _build, _tags = parse_wheel_filename(wheel.name)
        pins[canonicalize_name(name)] = str(version)
    return pins


def build_context(output: Path) -> BuildContext:
    """Writes the image's build context into ``output`` (replacing a wheelhouse there)."""
    pins = installed_closure(DISTRIBUTION, [WORKER_EXTRA])
    _check_host(pins["apache-beam"])
    root = checkout()
    output.mkdir(parents=True, exist_ok=True)
    wheelhouse = output / "wheelhouse"
    if wheelhouse.exists():
        shutil.rmtree(wheelhouse)
    with tempfile.TemporaryDirectory(prefix="sf-wheelhouse-") as tmp:
        constraints = Path(tmp) / "constraints.txt"
        constraints.write_text(
            "".join(f"{n}=={v}\n" for n, v in sorted(pins.items()) if n != DISTRIBUTION), encoding="utf-8"
        )
        process = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--disable-pip-version-check",
                "--wheel-dir",
                str(wheelhouse),
                "--constraint",
                str(constraints),
                f"{root}[{WORKER_EXTRA}]",
            ],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )
    if process.returncode != 0:
        raise PackagingError(f"pip wheel failed:\n{process.stderr[-3000:]}")
    built = _pins_of(wheelhouse)
    if built != pins:
        differ = sorted(n for n in set(built) | set(pins) if built.get(n) != pins.get(n))
        raise PackagingError(
            "the wheelhouse differs from the installed versions: "
            + ", ".join(f"{n} {pins.get(n)} here, {built.get(n)} built" for n in differ)
        )
    (wheelhouse / "requirements.txt").write_text(
        "# StreamForge and its runtime dependencies, pinned (streamforge dataflow build)\n"
        + "".join(f"{n}=={v}\n" for n, v in sorted(built.items())),
        encoding="utf-8",
    )
    for name in CONTEXT_FILES:
        shutil.copy2(root / "dataflow" / name, output / name)
    args = build_args(built)
    (output / "cloudbuild.yaml").write_text(_cloudbuild(args), encoding="utf-8")
    return BuildContext(output, built, args)


def _cloudbuild(args: dict[str, str]) -> str:
    build = "".join(f"      - --build-arg\n      - {k}={v}\n" for k, v in args.items())
    return (
        "# Cloud Build: gcloud builds submit DIR --config DIR/cloudbuild.yaml --substitutions _IMAGE=IMAGE\n"
        "# (written by streamforge dataflow build)\n"
        "steps:\n  - name: gcr.io/cloud-builders/docker\n    args:\n      - build\n"
        + build
        + "      - --tag\n      - $_IMAGE\n      - .\nimages:\n  - $_IMAGE\n"
    )
