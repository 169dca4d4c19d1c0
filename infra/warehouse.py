"""BigQuery: the dataset and every table and view the writers use
(``streamforge/warehouse_tables.py``), with IAM.

Tables are created here, partitioned and clustered as their schemas declare: the jobs only
append (CREATE_NEVER), so a job that writes a table the program does not deploy fails. The
writers get ``dataEditor`` on this dataset only.
"""

from __future__ import annotations

import json

import pulumi
import pulumi_gcp as gcp

from infra.component import Area
from infra.identities import Identities
from infra.settings import Settings
from streamforge.warehouse_tables import TableSpec

__all__ = ["Warehouse"]

_WRITERS = {"analytics": "analytics", "cdc": "cdc-job", "batch": "batch"}


class Warehouse(Area):
    def __init__(
        self,
        settings: Settings,
        specs: tuple[TableSpec, ...],
        identities: Identities,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("Warehouse", "warehouse", opts)
        self.dataset = gcp.bigquery.Dataset(
            "dataset",
            project=settings.project,
            dataset_id=settings.dataset,
            location=settings.location,
            description="StreamForge: sessions, revenue, fraud alerts, CDC replicas, daily metrics, dead letters.",
            labels=settings.labels,
            delete_contents_on_destroy=False,
            opts=self.child,
        )
        self.ref = f"{settings.project}.{settings.dataset}"
        self.url = f"bigquery://{self.ref}"
        self.tables: dict[str, gcp.bigquery.Table] = {}
        for spec in sorted(specs, key=lambda s: s.view_query is not None):  # tables before the views over them
            self.tables[spec.table_id] = gcp.bigquery.Table(
                f"table-{spec.table_id}",
                project=settings.project,
                dataset_id=self.dataset.dataset_id,
                table_id=spec.table_id,
                description=spec.description,
                labels=settings.labels,
                schema=json.dumps(list(spec.fields)) if spec.fields else None,
                time_partitioning={"type": "DAY", "field": spec.partition_field} if spec.partition_field else None,
                clusterings=list(spec.clustering) or None,
                view={"query": spec.view_query.format(dataset=self.ref), "use_legacy_sql": False}
                if spec.view_query
                else None,
                deletion_protection=settings.protect_data,
                opts=self.after(self.tables[spec.view_of]) if spec.view_of else self.child,
            )
        writers = sorted({w.strip() for spec in specs for w in spec.writer.split(",")})
        for writer in writers:
            workload = _WRITERS[writer]
            if workload in identities.accounts:
                gcp.bigquery.DatasetIamMember(
                    f"dataset-{workload}-editor",
                    project=settings.project,
                    dataset_id=self.dataset.dataset_id,
                    role="roles/bigquery.dataEditor",
                    member=identities.member(workload),
                    opts=self.child,
                )
        self.register_outputs({"dataset": self.ref, "tables": sorted(self.tables)})
