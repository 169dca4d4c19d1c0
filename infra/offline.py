"""Running the program without Google Cloud and without the Pulumi CLI: Pulumi's own mocks.

``run_offline`` sets the stack's config, runs ``deploy`` against a mock engine that fakes
only what Google computes (service account emails, function URLs, the Pub/Sub service agent, ...)
and returns every resource the program registered, with its inputs, parent and
dependencies. The tests check the deployment's policies on it; ``streamforge infra plan``
prints it. Nothing of the provider runs: no defaults are filled in, no API validates. The
program makes no data calls (``get_project`` and the like), so a preview needs nothing but
the APIs it enables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import pulumi
from pulumi.runtime import mocks, rpc
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

__all__ = ["FAKE_PROJECT_NUMBER", "Recorded", "run_offline", "unwrap"]

FAKE_PROJECT_NUMBER = "123456789012"
_SECRET = {rpc._special_sig_key: rpc._special_secret_sig}


@dataclass
class Recorded:
    urn: str
    type: str
    name: str
    custom: bool
    parent: str
    inputs: dict[str, Any]
    dependencies: list[str] = field(default_factory=list)

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
            state["url"] = f"https://{name}-{FAKE_PROJECT_NUMBER}.{region}.run.app"
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
                )
            )
        return response


def run_offline(
    program: Callable[[], Any],
    config: Mapping[str, str],
    secret_keys: list[str],
    project: str = "streamforge",
    stack: str = "offline",
) -> list[Recorded]:
    """Runs ``program`` with ``config`` under mocks; every registered resource, in order.
    An exception in the program (a bad setting, a missing artifact) is raised."""
    monitor = _RecordingMonitor(_GoogleFakes())
    pulumi.runtime.settings.reset_options()
    pulumi.runtime.set_all_config(dict(config), secret_keys)
    pulumi.runtime.set_mocks(_GoogleFakes(), project=project, stack=stack, preview=False, monitor=monitor)
    _sync_await(run_pulumi_func(program))
    return monitor.recorded
