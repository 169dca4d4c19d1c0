"""The ingest function's edge: an external HTTPS load balancer with a Cloud Armor policy.

The function limits each API key per instance (docs/functions.md, "Trust model"), but Cloud
Functions scales out, so that limit multiplies with the instances. Cloud Armor's throttle
rules hold across all of them: requests per minute per API key (the header the function reads
its key from) and per client IP, answered 429 beyond. With the edge on, the function's
ingress is ``ALLOW_INTERNAL_AND_GCLB``: its own URL no longer answers the internet, so the
rules cannot be bypassed. Created only when ``streamforge:ingestEdge.domain`` is set (the
managed certificate needs a name whose DNS points at the exported address).
"""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from infra.component import Area
from infra.settings import Settings

__all__ = ["IngestEdge", "INGRESS_BEHIND_EDGE"]

#: The function's ingress when the edge is its only way in.
INGRESS_BEHIND_EDGE = "ALLOW_INTERNAL_AND_GCLB"
_EVERYONE = {"versioned_expr": "SRC_IPS_V1", "config": {"src_ip_ranges": ["*"]}}
_LOWEST_PRIORITY = 2147483647  # the policy's default rule


def _throttle(priority: int, per_minute: int, description: str, key: str, key_name: str | None = None) -> dict:
    options = {
        "conform_action": "allow",
        "exceed_action": "deny(429)",
        "enforce_on_key": key,
        "rate_limit_threshold": {"count": per_minute, "interval_sec": 60},
    }
    if key_name:
        options["enforce_on_key_name"] = key_name
    return {
        "action": "throttle",
        "priority": priority,
        "description": description,
        "match": _EVERYONE,
        "rate_limit_options": options,
    }


class IngestEdge(Area):
    def __init__(
        self, settings: Settings, ingest: gcp.cloudfunctionsv2.Function, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("IngestEdge", "ingest-edge", opts)
        edge, header = settings.ingest_edge, settings.streamforge.ingest.api_key_header
        project, name = settings.project, f"{settings.prefix}-ingest"
        self.policy = gcp.compute.SecurityPolicy(
            "ingest-armor",
            project=project,
            name=name,
            type="CLOUD_ARMOR",
            description="StreamForge ingest: requests per minute per API key and per client IP",
            rules=[
                _throttle(1000, edge.requests_per_minute_per_key, f"per API key ({header})", "HTTP_HEADER", header),
                _throttle(1100, edge.requests_per_minute_per_ip, "per client IP", "IP"),
                {"action": "allow", "priority": _LOWEST_PRIORITY, "description": "default", "match": _EVERYONE},
            ],
            opts=self.child,
        )
        self.endpoints = gcp.compute.RegionNetworkEndpointGroup(
            "ingest-neg",
            project=project,
            region=settings.region,
            name=name,
            network_endpoint_type="SERVERLESS",
            cloud_run={"service": ingest.name},  # a 2nd gen function is a Cloud Run service of its name
            opts=self.child,
        )
        self.backend = gcp.compute.BackendService(
            "ingest-backend",
            project=project,
            name=name,
            load_balancing_scheme="EXTERNAL_MANAGED",
            protocol="HTTPS",
            backends=[{"group": self.endpoints.id}],
            security_policy=self.policy.id,
            opts=self.child,
        )
        url_map = gcp.compute.URLMap(
            "ingest-urls", project=project, name=name, default_service=self.backend.id, opts=self.child
        )
        certificate = gcp.compute.ManagedSslCertificate(
            "ingest-certificate", project=project, name=name, managed={"domains": [edge.domain]}, opts=self.child
        )
        proxy = gcp.compute.TargetHttpsProxy(
            "ingest-proxy",
            project=project,
            name=name,
            url_map=url_map.id,
            ssl_certificates=[certificate.id],
            opts=self.child,
        )
        self.address = gcp.compute.GlobalAddress("ingest-address", project=project, name=name, opts=self.child)
        gcp.compute.GlobalForwardingRule(
            "ingest-https",
            project=project,
            name=name,
            target=proxy.id,
            port_range="443",
            ip_address=self.address.address,
            load_balancing_scheme="EXTERNAL_MANAGED",
            opts=self.child,
        )
        self.url = f"https://{edge.domain}/"
        self.register_outputs({"ingest_edge_url": self.url, "ingest_edge_address": self.address.address})
