"""Running the program as ``pulumi up`` runs it, without Google Cloud or the Pulumi CLI: Pulumi's mocks.

``run_program`` starts a fresh interpreter that does what Pulumi's Python language host does
(``pulumi-language-python-exec``): it takes the stack's config from ``PULUMI_CONFIG`` and
``PULUMI_CONFIG_SECRET_KEYS`` (the engine passes decrypted secrets that way), changes into the
``main:`` folder of Pulumi.yaml and runs it with ``runpy.run_path('.', run_name='__main__')``,
so that folder is first on ``sys.path`` and relative paths resolve inside it, exactly as under
``pulumi up``. Only the engine differs: a mock that fakes what Google computes (service
account emails, function URLs, the Pub/Sub service agent, ...) and records every resource the
program registers, with its inputs, parent and dependencies. The tests check the
deployment's policies on that record; ``streamforge infra plan`` prints it. Nothing of the
provider runs: no defaults are filled in, no API validates. The program makes no data calls
(``get_project`` and the like), so a preview needs nothing but the APIs it enables.

This module imports nothing of the project, and the host loads it by its path: nothing the
program imports is resolved before the program runs, as under Pulumi's own host.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import socket
import subprocess
import sys
import tempfile
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import pulumi
from pulumi.runtime import mocks, rpc
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

__all__ = ["FAKE_PROJECT_NUMBER", "ProgramError", "Recorded", "is_secret", "run_program", "unwrap"]

FAKE_PROJECT_NUMBER = "123456789012"
_ASSET = "__file_asset__"


class ProgramError(RuntimeError):
    """The program failed under the mock engine; the message is its error (a bad setting, a
    missing artifact, a crash), as ``pulumi up`` would print it; ``kind`` is its type's name."""

    def __init__(self, message: str, kind: str = "Error"):
        super().__init__(message)
        self.kind = kind


@dataclass
class Recorded:
    urn: str
    type: str
    name: str
    custom: bool
    parent: str
    inputs: dict[str, Any]
    dependencies: list[str] = field(default_factory=list)
    delete_before_replace: bool = False

    def get(self, *path: str) -> Any:
        """The (unwrapped) input at ``path``, or None."""
        value: Any = self.inputs
        for key in path:
            value = unwrap(value)
            if not isinstance(value, dict):
                return None
            value = value.get(key)
        return unwrap(value)


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(rpc._special_sig_key) == rpc._special_secret_sig


def unwrap(value: Any) -> Any:
    """``value`` with Pulumi's secret wrappers removed (recursively)."""
    if is_secret(value):
        return unwrap(value.get("value"))
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def project_main(project_dir: Path) -> tuple[str, Path]:
    """The project's name and its ``main:`` folder, from ``project_dir/Pulumi.yaml``."""
    name, main = None, "."
    for line in (project_dir / "Pulumi.yaml").read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition(":")
        if key == "name":
            name = value.strip()
        elif key == "main":
            main = value.strip()
    if not name:
        raise ProgramError(f"{project_dir / 'Pulumi.yaml'}: no project name")
    return name, (project_dir / main).resolve()


def run_program(
    project_dir: Path, config: Mapping[str, str], secret_keys: list[str], stack: str = "offline"
) -> list[Recorded]:
    """Runs the Pulumi program of ``project_dir`` with ``config`` (namespaced keys, values as the
    engine passes them: strings, objects as JSON) in a fresh interpreter, the way ``pulumi up``
    does, under the mock engine; every registered resource, in order. ProgramError when the
    program fails, with its error."""
    project, main = project_main(project_dir)
    handle, name = tempfile.mkstemp(prefix="streamforge-plan-", suffix=".jsonl")
    os.close(handle)
    out = Path(name)
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PULUMI_CONFIG")},
        "PULUMI_CONFIG": json.dumps(dict(config)),
        "PULUMI_CONFIG_SECRET_KEYS": json.dumps(sorted(secret_keys)),
    }
    bootstrap = (
        "import importlib.util, sys\n"
        "spec = importlib.util.spec_from_file_location('streamforge_pulumi_host', sys.argv[1])\n"
        "host = importlib.util.module_from_spec(spec)\n"
        "sys.modules[spec.name] = host\n"
        "spec.loader.exec_module(host)\n"
        "sys.exit(host.host_main(sys.argv[2:]))\n"
    )
    try:
        process = subprocess.run(
            [
                sys.executable,
                "-c",
                bootstrap,
                __file__,
                f"--pwd={main}",
                f"--out={out}",
                f"--project={project}",
                f"--stack={stack}",
            ],
            cwd=project_dir,
            env=environment,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=600,
        )
        lines = out.read_text(encoding="utf-8").splitlines()
        if process.returncode != 0:
            failure = json.loads(lines[0]) if lines else {"error": process.stderr[-3000:] or "no output"}
            raise ProgramError(failure["error"], failure.get("type", "Error"))
        return [_decode(json.loads(line)) for line in lines]
    finally:
        out.unlink(missing_ok=True)


def _encode(value: Any) -> Any:
    if isinstance(value, pulumi.FileAsset):
        return {_ASSET: value.path}
    raise TypeError(f"cannot record {type(value).__name__}")


def _decode(entry: dict[str, Any]) -> Recorded:
    def restore(value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) == {_ASSET}:
                return pulumi.FileAsset(value[_ASSET])
            return {k: restore(v) for k, v in value.items()}
        if isinstance(value, list):
            return [restore(v) for v in value]
        return value

    return Recorded(**{**entry, "inputs": restore(entry["inputs"])})


# -- inside the host process ------------------------------------------------------------------


class _GoogleFakes(pulumi.runtime.Mocks):
    """What Google would compute for a resource: the rest of its state is its inputs."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        state = dict(args.inputs)
        project = unwrap(state.get("project")) or "project"
        name = unwrap(state.get("name")) or args.name
        region = unwrap(state.get("location") or state.get("region")) or "region"
        kind = args.typ
        resource_id = f"{name}-id"
        if kind == "gcp:serviceaccount/account:Account":
            email = f"{state['accountId']}@{project}.iam.gserviceaccount.com"
            resource_id = f"projects/{project}/serviceAccounts/{email}"
            state.update(email=email, name=resource_id, member=f"serviceAccount:{email}")
        elif kind == "gcp:projects/serviceIdentity:ServiceIdentity":
            agent = unwrap(state["service"]).split(".")[0]
            state["email"] = f"service-{FAKE_PROJECT_NUMBER}@gcp-sa-{agent}.iam.gserviceaccount.com"
        elif kind == "gcp:cloudfunctionsv2/function:Function":
            state["url"] = f"https://{region}-{project}.cloudfunctions.net/{name}"  # the function's alias
            service = dict(unwrap(state.get("serviceConfig")) or {})
            service["uri"] = f"https://{name}-{FAKE_PROJECT_NUMBER}.{region}.run.app"  # its Cloud Run service
            state["serviceConfig"] = service
        elif kind == "gcp:cloudrunv2/service:Service":
            state["uri"] = f"https://{name}-{FAKE_PROJECT_NUMBER}.{region}.run.app"
        elif kind == "gcp:sql/databaseInstance:DatabaseInstance":
            state["connectionName"] = f"{project}:{region}:{name}"
        elif kind == "gcp:pubsub/topic:Topic":
            resource_id = f"projects/{project}/topics/{name}"
        elif kind == "gcp:pubsub/subscription:Subscription":
            resource_id = f"projects/{project}/subscriptions/{name}"
        elif kind == "gcp:secretmanager/secret:Secret":
            resource_id = f"projects/{project}/secrets/{state['secretId']}"
        elif kind == "gcp:monitoring/notificationChannel:NotificationChannel":
            state["name"] = resource_id = f"projects/{project}/notificationChannels/{args.name}"
        elif kind == "gcp:artifactregistry/repository:Repository":
            resource_id = f"projects/{project}/locations/{region}/repositories/{state['repositoryId']}"
            state["name"] = state["repositoryId"]
        elif kind == "gcp:dataflow/flexTemplateJob:FlexTemplateJob":
            state["jobId"] = f"2026-01-01_00_00_00-{abs(hash(name)) % 10**12}"
        return resource_id, state

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        raise NotImplementedError(f"no fake for the data call {args.token}: the program makes none")


class _RecordingMonitor(mocks.MockMonitor):
    def __init__(self, fakes: pulumi.runtime.Mocks):
        super().__init__(fakes)
        self.recorded: list[Recorded] = []

    def RegisterResource(self, request):  # noqa: N802 - the gRPC method's name
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self.recorded.append(
                Recorded(
                    response.urn,
                    request.type,
                    request.name,
                    bool(request.custom),
                    request.parent,
                    rpc.deserialize_properties(request.object),
                    list(request.dependencies),
                    bool(request.deleteBeforeReplace),
                )
            )
        return response


def _forbid_network() -> list[str]:
    """Every connection or name lookup fails (and is listed): the mock engine runs in this
    process, so a program that reaches out is a program that would do so at preview time."""
    attempts: list[str] = []

    def refuse(host: Any) -> None:
        attempts.append(str(host))
        raise OSError(f"offline: no network access ({host})")

    def connect(self: socket.socket, address: Any) -> Any:
        if self.family != socket.AF_UNIX:
            refuse(address[0])
        return real_connect(self, address)

    real_connect = socket.socket.connect
    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect  # type: ignore[method-assign]
    socket.getaddrinfo = lambda host, *a, **k: refuse(host)  # type: ignore[assignment]
    return attempts


def host_main(argv: list[str]) -> int:
    """What pulumi-language-python-exec does, with the mock engine in place of the CLI's."""
    parser = argparse.ArgumentParser(prog="streamforge-pulumi-host")
    for option in ("--pwd", "--out", "--project", "--stack"):
        parser.add_argument(option, required=True)
    args = parser.parse_args(argv)
    pulumi.runtime.set_all_config(pulumi.runtime.get_config_env(), pulumi.runtime.get_config_secret_keys_env())
    monitor = _RecordingMonitor(_GoogleFakes())
    pulumi.runtime.set_mocks(_GoogleFakes(), project=args.project, stack=args.stack, preview=False, monitor=monitor)
    sys.argv = ["."]
    os.chdir(args.pwd)
    attempts = _forbid_network()
    try:
        _sync_await(run_pulumi_func(lambda: runpy.run_path(".", run_name="__main__")))
        if attempts:
            raise ProgramError(f"the program tried to reach the network, offline: {', '.join(attempts)}")
    except Exception as exc:  # the program's own error, as `pulumi up` would print it
        traceback.print_exc()
        with open(args.out, "w", encoding="utf-8") as out:
            out.write(json.dumps({"type": type(exc).__name__, "error": str(exc)}) + "\n")
        return 1
    with open(args.out, "w", encoding="utf-8") as out:
        for resource in monitor.recorded:
            out.write(json.dumps(asdict(resource), default=_encode) + "\n")
    return 0
