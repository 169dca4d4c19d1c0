"""The whole deployment: the areas, wired in dependency order, and the stack's outputs."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from infra.apis import ProjectApis
from infra.artifacts import read_batch_package, read_template
from infra.cdc import ChangeCapture
from infra.cloud_functions import DEPLOYED, Functions
from infra.daily_batch import DailyBatch
from infra.edge import IngestEdge
from infra.identities import Identities
from infra.ledger import AlertLedger
from infra.messaging import Messaging
from infra.observability import Observability
from infra.pipelines import ANALYTICS_JOB, Pipelines
from infra.settings import Settings
from infra.storage import Storage
from infra.warehouse import Warehouse
from streamforge.cdc.config import DebeziumServerConfig
from streamforge.naming import dataflow_job_name, function_name
from streamforge.topology import topology
from streamforge.warehouse_tables import captured_tables, warehouse_tables

__all__ = ["Platform", "deploy"]


@dataclass
class Platform:
    """The areas of one deployment (what tests and the plan look at)."""

    settings: Settings
    messaging: Messaging
    warehouse: Warehouse
    storage: Storage
    functions: Functions
    batch: DailyBatch
    observability: Observability
    cdc: ChangeCapture | None
    pipelines: Pipelines | None
    edge: IngestEdge | None = None


def deploy(settings: Settings | None = None) -> Platform:
    settings = settings or Settings.load()
    debezium = DebeziumServerConfig.load() if settings.cdc.enabled else None
    captured = captured_tables(debezium)
    layout = topology(settings.streamforge, debezium, settings.prefix)
    templates = (
        {
            name: read_template(settings.templates_dir, name)
            for name in ("analytics", "cdc")
            if name == "analytics" or settings.cdc.enabled
        }
        if settings.deploy_jobs
        else {}
    )
    batch_package = read_batch_package(settings.batch_dir)

    apis = ProjectApis(settings)
    after_apis = pulumi.ResourceOptions(depends_on=[apis])
    identities = Identities(settings, after_apis)
    messaging = Messaging(settings, layout, identities, after_apis)
    warehouse = Warehouse(settings, warehouse_tables(settings.streamforge, captured), identities, after_apis)
    storage = Storage(settings, identities, templates, DEPLOYED, batch_package, after_apis)
    ledger = AlertLedger(settings, after_apis)
    functions = Functions(settings, identities, messaging, storage, ledger, after_apis)
    edge = IngestEdge(settings, functions.ingest, after_apis) if settings.ingest_edge.domain else None
    cdc = ChangeCapture(settings, debezium, identities, messaging, storage, after_apis) if debezium else None
    batch = DailyBatch(settings, batch_package, identities, storage, warehouse, after_apis)
    pipelines = (
        Pipelines(settings, templates, identities, messaging, warehouse, storage, after_apis)
        if settings.deploy_jobs
        else None
    )
    jobs = [dataflow_job_name(ANALYTICS_JOB)] + ([dataflow_job_name("cdc")] if debezium else [])
    observability = Observability(settings, layout, jobs, [function_name(f) for f in DEPLOYED], batch.name, after_apis)

    console = f"https://console.cloud.google.com/{{}}?project={settings.project}"
    pulumi.export("topics", [t.id for t in layout.topics])
    pulumi.export("subscriptions", [s.id for s in layout.subscriptions])
    pulumi.export("dataset", warehouse.ref)
    pulumi.export("tables", sorted(warehouse.tables))
    pulumi.export("ingest_url", edge.url if edge is not None else functions.ingest.url)
    if edge is not None:  # point the domain's DNS A record here
        pulumi.export("ingest_edge_address", edge.address.address)
    pulumi.export("alert_dispatcher_url", functions.dispatcher.url)
    pulumi.export("dataflow_jobs", jobs)
    pulumi.export(
        "buckets",
        {
            "dataflow": storage.dataflow.name,
            "templates": storage.templates.name,
            "functions": storage.sources.name,
            "batch": storage.batch.name,
        },
    )
    pulumi.export("image_repository", f"{settings.region}-docker.pkg.dev/{settings.project}/{settings.prefix}")
    pulumi.export("daily_batch_workflow", batch.name)
    if cdc is not None:
        pulumi.export("cloud_sql_instance", cdc.instance.connection_name)
        pulumi.export("debezium_service", cdc.service.name)
    pulumi.export(
        "console",
        {
            "dataflow": console.format(f"dataflow/jobs/{settings.region}"),
            "bigquery": console.format("bigquery") + f"&ws=!1m4!1m3!3m2!1s{settings.project}!2s{settings.dataset}",
            "pubsub": console.format("cloudpubsub/subscription/list"),
            "monitoring": console.format("monitoring/dashboards"),
            "workflows": console.format(f"workflows/workflow/{settings.region}/{batch.name}/executions"),
        },
    )
    return Platform(settings, messaging, warehouse, storage, functions, batch, observability, cdc, pipelines, edge)
