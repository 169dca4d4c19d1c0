"""Dataflow: the streaming analytics job and the CDC job, launched from their Flex Templates.

Each runs as its own service account, with Streaming Engine, its stable name
(``streamforge-<job>``, the name ``streamforge run`` and ``dataflow watch`` use) and labels;
deleting a job drains it. The parameters are checked against the template spec before
anything is created. Changing a template's image or parameters relaunches the job:
docs/infra.md says how to update a running job in place instead.
"""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from infra.artifacts import FlexTemplate, check_parameters
from infra.component import Area
from infra.identities import Identities
from infra.messaging import Messaging
from infra.settings import Settings
from infra.storage import Storage
from infra.warehouse import Warehouse
from streamforge.naming import JOB_LABEL, dataflow_job_name

__all__ = ["Pipelines", "analytics_parameters", "cdc_parameters"]

ANALYTICS_JOB = "all"  # sessions, revenue and fraud in one job, each stream read once


def analytics_parameters(settings: Settings, messaging: Messaging, warehouse: Warehouse) -> dict[str, str]:
    topics, topology = settings.streamforge.topics, messaging.topology
    parameters = {
        "job": ANALYTICS_JOB,
        "clickstream": messaging.subscription_url(topology.subscription("analytics", topics.clickstream).id),
        "orders": messaging.subscription_url(topology.subscription("analytics", topics.orders).id),
        "warehouse": warehouse.url,
        "alerts_topic": messaging.topic_path(topics.fraud_alerts),
        "dead_letter_topic": messaging.topic_path(topics.dead_letter),
        "raw_events": "true",  # the daily batch reads clickstream_events and order_events
    }
    catalog = [s for s in topology.consumed_by("analytics") if s.table == "products"]
    if catalog:
        parameters["catalog"] = messaging.subscription_url(catalog[0].id)
    return parameters


def cdc_parameters(settings: Settings, messaging: Messaging, warehouse: Warehouse) -> dict[str, str]:
    return {
        "input": messaging.subscription_url(messaging.topology.cdc_subscription_pattern),
        "warehouse": warehouse.url,
    }


class Pipelines(Area):
    def __init__(
        self,
        settings: Settings,
        templates: dict[str, FlexTemplate],
        identities: Identities,
        messaging: Messaging,
        warehouse: Warehouse,
        storage: Storage,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("Pipelines", "pipelines", opts)
        launches = [("analytics", "analytics", ANALYTICS_JOB, analytics_parameters(settings, messaging, warehouse))]
        if settings.cdc.enabled:
            launches.append(("cdc", "cdc-job", "cdc", cdc_parameters(settings, messaging, warehouse)))
        # the analytics job publishes fraud alerts and dead letters itself (common/publish.py)
        topics = settings.streamforge.topics
        publishes = [messaging.allow_publish(t, "analytics", self) for t in (topics.fraud_alerts, topics.dead_letter)]
        dataflow = settings.dataflow
        self.jobs: dict[str, gcp.dataflow.FlexTemplateJob] = {}
        for template_name, workload, job, parameters in launches:
            template = templates[template_name]
            self.jobs[template_name] = gcp.dataflow.FlexTemplateJob(
                f"job-{template_name}",
                project=settings.project,
                region=settings.region,
                name=dataflow_job_name(job),
                container_spec_gcs_path=storage.gs_path(storage.template_paths[template_name]),
                parameters=check_parameters(template, parameters),
                sdk_container_image=template.image,
                service_account_email=identities.email(workload),
                enable_streaming_engine=True,
                machine_type=dataflow.machine_type,
                max_workers=dataflow.max_workers,
                ip_configuration="WORKER_IP_PRIVATE" if dataflow.private_ips else "WORKER_IP_PUBLIC",
                subnetwork=dataflow.subnetwork,
                temp_location=storage.dataflow_temp,
                staging_location=storage.dataflow_staging,
                labels={**settings.labels, JOB_LABEL: job},
                on_delete="drain",
                skip_wait_on_job_termination=False,
                # every table, subscription, bucket and role it needs exists before it starts; a
                # change Dataflow cannot update in place replaces the job, and a second job of the same
                # name cannot start while the first runs: drain it first, then launch
                opts=pulumi.ResourceOptions.merge(
                    self.after(identities, messaging, warehouse, storage, *publishes),
                    pulumi.ResourceOptions(delete_before_replace=True),
                ),
            )
        self.register_outputs({"jobs": {name: job.job_id for name, job in self.jobs.items()}})
