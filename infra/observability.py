"""Cloud Monitoring: alert policies on what can go wrong, and a dashboard of the pipelines' counters.

Policies: each Dataflow job's system lag and data freshness; the oldest unacknowledged
message of every subscription a consumer reads (the CDC subscriptions with a tighter bound:
that is the replication lag); the backlog of the operators' subscriptions (undeliverable
messages, dead letters waiting) and the rate of new dead letters; 5xx answers of the
functions; failed runs of the daily batch. Notifications go to ``notificationEmails``.
The dashboard charts each job's Beam counters (Dataflow's ``user_counter``, by name:
nothing here lists them), the lag, the subscriptions' backlog and the dead-letter rate.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_gcp as gcp

from infra.component import Area
from infra.settings import Settings
from streamforge.topology import Topology

__all__ = ["Observability"]


def _condition(
    name: str, filter_: str, threshold: float, *, seconds: int = 300, aligner: str = "ALIGN_MAX", period: int = 60
) -> dict[str, Any]:
    return {
        "display_name": name,
        "condition_threshold": {
            "filter": filter_,
            "comparison": "COMPARISON_GT",
            "threshold_value": threshold,
            "duration": f"{seconds}s",
            "aggregations": [{"alignment_period": f"{period}s", "per_series_aligner": aligner}],
        },
    }


class Observability(Area):
    def __init__(
        self,
        settings: Settings,
        topology: Topology,
        dataflow_jobs: list[str],
        functions: list[str],
        workflow: str,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("Observability", "observability", opts)
        self.channels = [
            gcp.monitoring.NotificationChannel(
                f"notify-{index}",
                project=settings.project,
                type="email",
                display_name=f"StreamForge: {email}",
                labels={"email_address": email},
                opts=self.child,
            )
            for index, email in enumerate(settings.notification_emails)
        ]
        channel_ids = [c.name for c in self.channels]
        thresholds = settings.alerts
        self.policies: dict[str, gcp.monitoring.AlertPolicy] = {}

        def policy(key: str, title: str, doc: str, *conditions: dict[str, Any]) -> None:
            self.policies[key] = gcp.monitoring.AlertPolicy(
                f"alert-{key}",
                project=settings.project,
                display_name=f"StreamForge: {title}",
                combiner="OR",
                conditions=list(conditions),
                notification_channels=channel_ids,
                severity="ERROR",
                documentation={"content": doc, "mime_type": "text/markdown"},
                user_labels=settings.labels,
                opts=self.child,
            )

        for job in dataflow_jobs:
            where = f'resource.type = "dataflow_job" AND resource.label.job_name = "{job}"'
            policy(
                f"{job}-system-lag",
                f"{job} system lag",
                f"Elements wait longer than {thresholds.system_lag_seconds} s in {job}: it does not keep up "
                "(max workers, a hot key, a slow sink). docs/infra.md, Operating.",
                _condition(
                    "system lag",
                    f'{where} AND metric.type = "dataflow.googleapis.com/job/system_lag"',
                    thresholds.system_lag_seconds,
                ),
            )
            policy(
                f"{job}-freshness",
                f"{job} data freshness",
                f"{job}'s watermark is {thresholds.data_freshness_seconds} s behind: windows close late or an input "
                "is stuck.",
                _condition(
                    "data freshness",
                    f'{where} AND metric.type = "dataflow.googleapis.com/job/data_watermark_age"',
                    thresholds.data_freshness_seconds,
                ),
            )
        for subscription in topology.subscriptions:
            where = f'resource.type = "pubsub_subscription" AND resource.label.subscription_id = "{subscription.id}"'
            if subscription.consumer == "operators":
                policy(
                    f"{subscription.id}-backlog",
                    f"messages waiting in {subscription.id}",
                    f"{subscription.purpose}: inspect them (docs/infra.md, Operating).",
                    _condition(
                        "backlog",
                        f'{where} AND metric.type = "pubsub.googleapis.com/subscription/num_undelivered_messages"',
                        0,
                        seconds=60,
                    ),
                )
                continue
            bound = (
                thresholds.cdc_oldest_unacked_seconds
                if subscription.consumer == "cdc"
                else thresholds.oldest_unacked_seconds
            )
            policy(
                f"{subscription.id}-oldest-unacked",
                f"{subscription.id} falls behind",
                f"The oldest unacknowledged message of {subscription.id} ({subscription.purpose}) is older than "
                f"{bound} s.",
                _condition(
                    "oldest unacked message",
                    f'{where} AND metric.type = "pubsub.googleapis.com/subscription/oldest_unacked_message_age"',
                    bound,
                ),
            )
        dead_letters = settings.streamforge.topics.dead_letter
        policy(
            "dead-letter-rate",
            "dead letters",
            f"More than {thresholds.dead_letters_per_minute} dead letters a minute: look at their reasons in the "
            "dead_letter table.",
            _condition(
                "dead letters per minute",
                f'resource.type = "pubsub_topic" AND resource.label.topic_id = "{dead_letters}" AND '
                'metric.type = "pubsub.googleapis.com/topic/send_message_operation_count"',
                thresholds.dead_letters_per_minute / 60,
                aligner="ALIGN_RATE",
            ),
        )
        for function in functions:
            policy(
                f"{function}-errors",
                f"{function} errors",
                f"{function} answers 5xx (for the dispatcher: webhooks failing, Pub/Sub retries).",
                _condition(
                    "5xx answers",
                    f'resource.type = "cloud_run_revision" AND resource.label.service_name = '
                    f'"{function}" AND metric.type = "run.googleapis.com/request_count" AND '
                    'metric.label.response_code_class = "5xx"',
                    0,
                    aligner="ALIGN_RATE",
                ),
            )
        policy(
            "daily-batch-failed",
            "daily batch failed",
            "The daily batch failed, or its reconciliation found a MISMATCH (exit 3): the execution's error says "
            "which; `gcloud dataproc batches describe` shows the driver output.",
            _condition(
                "failed executions",
                f'resource.type = "workflows.googleapis.com/Workflow" AND '
                f'resource.label.workflow_id = "{workflow}" AND metric.type = '
                '"workflows.googleapis.com/finished_execution_count" AND metric.label.status = "FAILED"',
                0,
                seconds=0,
                aligner="ALIGN_SUM",
                period=300,
            ),
        )
        self.dashboard = gcp.monitoring.Dashboard(
            "dashboard",
            project=settings.project,
            dashboard_json=json.dumps(_dashboard(settings, topology, dataflow_jobs)),
            opts=self.child,
        )
        self.register_outputs({"policies": sorted(self.policies)})


def _chart(title: str, filter_: str, aligner: str = "ALIGN_RATE", group_by: list[str] | None = None) -> dict[str, Any]:
    aggregation: dict[str, Any] = {"alignmentPeriod": "60s", "perSeriesAligner": aligner}
    if group_by:
        aggregation.update({"crossSeriesReducer": "REDUCE_SUM", "groupByFields": group_by})
    return {
        "title": title,
        "xyChart": {
            "dataSets": [
                {
                    "timeSeriesQuery": {"timeSeriesFilter": {"filter": filter_, "aggregation": aggregation}},
                    "plotType": "LINE",
                }
            ]
        },
    }


def _dashboard(settings: Settings, topology: Topology, jobs: list[str]) -> dict[str, Any]:
    widgets = []
    for job in jobs:
        where = f'resource.type="dataflow_job" AND resource.label.job_name="{job}"'
        # user_counter is a gauge of each counter's running total
        widgets.append(
            _chart(
                f"{job}: counters (running totals)",
                f'{where} AND metric.type="dataflow.googleapis.com/job/user_counter"',
                aligner="ALIGN_MAX",
                group_by=["metric.label.metric_name"],
            )
        )
        widgets.append(
            _chart(
                f"{job}: system lag (s)",
                f'{where} AND metric.type="dataflow.googleapis.com/job/system_lag"',
                aligner="ALIGN_MAX",
            )
        )
    widgets.append(
        _chart(
            "Subscriptions: oldest unacked message (s)",
            'resource.type="pubsub_subscription" AND '
            'metric.type="pubsub.googleapis.com/subscription/oldest_unacked_message_age" AND '
            f'resource.label.subscription_id=starts_with("{settings.prefix}-")',
            aligner="ALIGN_MAX",
            group_by=["resource.label.subscription_id"],
        )
    )
    widgets.append(
        _chart(
            "Dead letters per second",
            'resource.type="pubsub_topic" AND '
            f'resource.label.topic_id="{settings.streamforge.topics.dead_letter}" AND '
            'metric.type="pubsub.googleapis.com/topic/send_message_operation_count"',
        )
    )
    tiles = [
        {"xPos": (i % 2) * 6, "yPos": (i // 2) * 4, "width": 6, "height": 4, "widget": w} for i, w in enumerate(widgets)
    ]
    return {"displayName": f"StreamForge ({settings.prefix})", "mosaicLayout": {"columns": 12, "tiles": tiles}}
