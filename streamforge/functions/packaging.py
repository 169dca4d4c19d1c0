"""Building a function's deployable folder: its main.py and requirements.txt plus the wheel.

Cloud Functions installs a function's requirements.txt from the uploaded folder alone, so the
folder must carry the shared code. ``package`` builds the streamforge wheel, copies the
function's folder next to it (``DIR/<name>/wheels/streamforge-<version>-py3-none-any.whl``),
checks that requirements.txt names exactly that wheel, and zips the folder
(``DIR/<name>.zip``) for an upload to Cloud Storage (what the infra program deploys).
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from streamforge.config import Config, embedded_defaults
from streamforge.naming import function_name
from streamforge.packaging import REPO_ROOT, WHEEL_NAME, PackagingError, build_wheel

__all__ = ["FUNCTIONS", "FunctionSpec", "deploy_command", "function_source", "package"]


@dataclass(frozen=True)
class FunctionSpec:
    name: str  # its folder under functions/
    target: str  # the entry point in its main.py
    signature_type: str  # functions-framework's: http or cloudevent
    trigger: str  # gcloud's trigger flags for the deploy hint; {fraud_alerts} is the configured topic
    push_target: str | None = None  # the HTTP entry point for a Pub/Sub push subscription (what infra deploys)


FUNCTIONS = {
    # --retry: without it an Eventarc-triggered function drops the event on any failure, and
    # the dispatcher fails on purpose (a 5xx or a timeout at a webhook) to get the alert again.
    "alert_dispatcher": FunctionSpec(
        "alert_dispatcher",
        "dispatch_alert",
        "cloudevent",
        "--trigger-topic={fraud_alerts} --retry",
        push_target="dispatch_push",
    ),
    "ingest": FunctionSpec("ingest", "ingest", "http", "--trigger-http --allow-unauthenticated"),
}


def deploy_command(name: str, source: Path, config: Config | None = None) -> str:
    """The ``gcloud functions deploy`` line for a folder ``package`` built (Eventarc for the
    dispatcher; ``pulumi up`` deploys it behind a push subscription instead, docs/infra.md)."""
    spec = FUNCTIONS[name]
    topics = (config or embedded_defaults()).topics
    return (
        f"gcloud functions deploy {function_name(name)} --gen2 --runtime=python311 --source={source} "
        f"--entry-point={spec.target} {spec.trigger.format(fraud_alerts=topics.fraud_alerts)}"
    )


def function_source(name: str, functions_dir: Path | None = None) -> Path:
    """The folder of function ``name`` (functions/<name> of the checkout by default)."""
    if name not in FUNCTIONS:
        raise PackagingError(f"unknown function {name!r}: choose from {', '.join(FUNCTIONS)}")
    folder = (functions_dir or REPO_ROOT / "functions") / name
    if not (folder / "main.py").is_file():
        raise PackagingError(f"{folder}/main.py not found: run from a StreamForge checkout (or pass --functions-dir)")
    return folder


def package(name: str, output: Path, wheel: Path | None = None, functions_dir: Path | None = None) -> Path:
    """Builds ``output/<name>/`` and ``output/<name>.zip``; returns the zip. ``wheel``: reuse one."""
    source = function_source(name, functions_dir)
    requirements = (source / "requirements.txt").read_text(encoding="utf-8")
    if f"./wheels/{WHEEL_NAME}[functions]" not in requirements.splitlines():
        raise PackagingError(
            f"{source}/requirements.txt must install ./wheels/{WHEEL_NAME}[functions] "
            "(the version in pyproject.toml changed? update the line)"
        )
    folder = output / name
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "wheels"))
    (folder / "wheels").mkdir()
    if wheel is None:
        with tempfile.TemporaryDirectory(prefix="sf-wheel-") as tmp:
            shutil.copy2(build_wheel(Path(tmp)), folder / "wheels" / WHEEL_NAME)
    else:
        shutil.copy2(wheel, folder / "wheels" / WHEEL_NAME)
    archive = output / f"{name}.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder).as_posix())
    return archive
