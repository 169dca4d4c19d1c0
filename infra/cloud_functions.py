"""Cloud Functions (2nd gen): the alert dispatcher behind an authenticated push subscription,
and the HTTP ingest function; their secrets from Secret Manager.

The dispatcher is not triggered through Eventarc: an Eventarc trigger has a retry policy but
no dead-letter topic. Pub/Sub pushes each alert to the function instead (OIDC token of the
``alert-push`` account, the only invoker; internal ingress); a 5xx is retried with
exponential backoff and after the subscription's delivery attempts the alert goes to the
undeliverable topic, where an alert policy sees it.
"""

from __future__ import annotations

import json

import pulumi
import pulumi_gcp as gcp

from infra.component import Area
from infra.edge import INGRESS_BEHIND_EDGE
from infra.identities import Identities
from infra.ledger import AlertLedger
from infra.messaging import Messaging
from infra.secret_manager import ManagedSecret, managed_secret
from infra.settings import Settings, SettingsError
from infra.storage import Storage
from streamforge.functions.ingest import API_KEYS_ENV
from streamforge.functions.ledger import LEDGER_ENV
from streamforge.functions.packaging import FUNCTIONS
from streamforge.functions.webhooks import WEBHOOKS_ENV
from streamforge.naming import function_name

__all__ = ["DEPLOYED", "Functions"]

#: The functions this area deploys (their packages come from `streamforge functions package`).
DEPLOYED = ("alert_dispatcher", "ingest")
_RUNTIME = "python311"


class Functions(Area):
    def __init__(
        self,
        settings: Settings,
        identities: Identities,
        messaging: Messaging,
        storage: Storage,
        ledger: AlertLedger,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("Functions", "functions", opts)
        self.settings, self.identities, self.storage = settings, identities, storage
        topics = settings.streamforge.topics

        # -- the alert dispatcher -------------------------------------------------------------
        hook_secrets = {
            variable: managed_secret(
                settings,
                f"webhook-{variable.lower().replace('_', '-')}",
                settings.webhook_secrets.apply(_entry(variable)),
                ["dispatcher"],
                identities,
                self,
            )
            for variable in settings.secret_variables
        }
        per_try = settings.streamforge.alert_dispatcher.webhook_timeout.total_seconds()
        self.dispatcher = self._function(
            "alert_dispatcher",
            FUNCTIONS["alert_dispatcher"].push_target,
            "dispatcher",
            ingress="ALLOW_INTERNAL_ONLY",  # only Pub/Sub (and the project) can reach it
            timeout=int(per_try * len(settings.webhooks)) + 30,  # every webhook may use its whole timeout
            environment={
                WEBHOOKS_ENV: json.dumps(list(settings.webhooks)),
                LEDGER_ENV: ledger.url,
                "GOOGLE_CLOUD_PROJECT": settings.project,
            },
            secrets=hook_secrets,
        )
        invoker = gcp.cloudrunv2.ServiceIamMember(
            "alert-dispatcher-invoker",
            project=settings.project,
            location=settings.region,
            name=self.dispatcher.name,
            role="roles/run.invoker",
            member=identities.member("alert-push"),
            opts=self.child,
        )
        push = messaging.topology.subscription("alert_dispatcher", topics.fraud_alerts)
        # the function's Cloud Run URL (run.app) as endpoint and audience: Cloud Run checks a pushed
        # OIDC token's audience against the service's own URL; the function's `url` output is the
        # cloudfunctions.net alias, which is not one
        service_url = self.dispatcher.service_config.apply(lambda config: config["uri"])
        self.push_subscription = messaging.subscribe(
            push,
            self,
            push_config={
                "push_endpoint": service_url,
                "oidc_token": {"service_account_email": identities.email("alert-push"), "audience": service_url},
            },
            depends_on=[invoker],
        )  # the first push must not meet a 403

        # -- ingest ---------------------------------------------------------------------------
        keys = managed_secret(settings, "ingest-api-keys", settings.ingest_api_keys, ["ingest"], identities, self)
        self.ingest = self._function(
            "ingest",
            FUNCTIONS["ingest"].target,
            "ingest",
            timeout=60,
            ingress=INGRESS_BEHIND_EDGE if settings.ingest_edge.domain else "ALLOW_ALL",  # the edge: infra/edge.py
            environment={"GOOGLE_CLOUD_PROJECT": settings.project},
            secrets={API_KEYS_ENV: keys},
        )
        if settings.ingest_public:  # browsers and apps call it; the function checks the API key
            gcp.cloudrunv2.ServiceIamMember(
                "ingest-public",
                project=settings.project,
                location=settings.region,
                name=self.ingest.name,
                role="roles/run.invoker",
                member="allUsers",
                opts=self.child,
            )
        for topic in (topics.clickstream, topics.orders):
            messaging.allow_publish(topic, "ingest", self)
        self.register_outputs({"dispatcher_url": self.dispatcher.url, "ingest_url": self.ingest.url})

    def _function(
        self,
        name: str,
        entry_point: str,
        workload: str,
        *,
        ingress: str,
        timeout: int,
        environment: dict[str, str],
        secrets: dict[str, ManagedSecret],
    ) -> gcp.cloudfunctionsv2.Function:
        settings, source = self.settings, self.storage.function_sources[name]
        return gcp.cloudfunctionsv2.Function(
            f"function-{name}",
            project=settings.project,
            location=settings.region,
            name=function_name(name),
            description=f"StreamForge {name} ({entry_point})",
            labels=settings.labels,
            build_config={
                "runtime": _RUNTIME,
                "entry_point": entry_point,
                "source": {"storage_source": {"bucket": source.bucket, "object": source.name}},
                "service_account": self.identities.accounts["fn-build"].id,
                # a repository of ours, where the build account may write (storage.py)
                "docker_repository": self.storage.function_images.id,
            },
            service_config={
                "service_account_email": self.identities.email(workload),
                "ingress_settings": ingress,
                "all_traffic_on_latest_revision": True,
                "available_memory": "512M",
                "timeout_seconds": timeout,
                "max_instance_count": 20,
                "environment_variables": environment,
                "secret_environment_variables": [
                    {"key": variable, "project_id": settings.project, "secret": secret.secret_id, "version": "latest"}
                    for variable, secret in secrets.items()
                ],
            },
            opts=self.after(*(s.version for s in secrets.values())),
        )


def _entry(variable: str):
    def pick(values: dict[str, str]) -> str:
        if variable not in (values or {}):
            raise SettingsError(
                f"streamforge:webhookSecrets has no {variable} (a webhook names it): "
                f"pulumi config set --secret --path 'webhookSecrets.{variable}' VALUE"
            )
        return values[variable]

    return pick
