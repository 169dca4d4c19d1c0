"""Every BigQuery table the program creates equals what its writer writes: the Beam jobs as
the Flex Template launcher builds them from the deployed job's own parameters (their
WriteToBigQuery schemas, partitioning and clustering), and the daily batch's Spark schemas
as the Spark BigQuery connector maps them."""

from __future__ import annotations

import json

import apache_beam as beam
from apache_beam.pipeline import PipelineVisitor
from pyspark.sql import types as T

from batch.frames import spark_schema
from beam_pipelines.dataflow.launcher import parse, request_from
from beam_pipelines.dataflow.templates import TEMPLATES
from beam_pipelines.jobs import build
from beam_pipelines.runner import pipeline_options
from streamforge.schemas.daily_tables import TABLES as DAILY_TABLES
from tests.support.infra import PROJECT
from tests.support.network import no_network


class _BigQueryWrites(PipelineVisitor):
    def __init__(self) -> None:
        self.found: dict[str, beam.io.WriteToBigQuery] = {}

    def enter_composite_transform(self, node) -> None:
        self.visit_transform(node)

    def visit_transform(self, node) -> None:
        if isinstance(node.transform, beam.io.WriteToBigQuery):
            self.found[node.transform.table_reference.tableId] = node.transform


def _written_by_jobs(deployment) -> dict[str, beam.io.WriteToBigQuery]:
    """Every BigQuery write of the deployed jobs, built as Dataflow's launcher builds them."""
    writes = _BigQueryWrites()
    for job in deployment.of_type("dataflow/flexTemplateJob:FlexTemplateJob"):
        template = TEMPLATES["analytics" if "job" in job.get("parameters") else "cdc"]
        values, rest = parse(template, [f"--{k}={v}" for k, v in job.get("parameters").items()])
        assert rest == []
        request = request_from(template, values)
        # the graph only (a local runner's options: the Dataflow runner would look for credentials)
        pipeline = beam.Pipeline(options=pipeline_options(request, []))
        with no_network():
            build(pipeline, request)
        pipeline.visit(writes)
    return writes.found


def test_every_table_the_jobs_write_exists_with_exactly_their_schema_and_layout(deployment) -> None:
    written = _written_by_jobs(deployment)
    tables = {t.get("tableId"): t for t in deployment.of_type("bigquery/table:Table")}
    created = {name for name, t in tables.items() if not t.get("view") and name not in DAILY_TABLES}
    assert set(written) == created
    for name, write in written.items():
        table = tables[name]
        assert (write.table_reference.projectId, write.table_reference.datasetId) == (PROJECT, "streamforge")
        assert json.loads(table.get("schema")) == write.schema["fields"], name
        partitioning = write.additional_bq_parameters.get("timePartitioning")
        assert table.get("timePartitioning") == partitioning, name
        assert partitioning is not None  # every table is partitioned
        assert table.get("clusterings") == (write.additional_bq_parameters.get("clustering") or {}).get("fields"), name


def test_the_replica_views_read_the_changes_tables_the_cdc_job_appends_to(deployment) -> None:
    tables = {t.get("tableId"): t for t in deployment.of_type("bigquery/table:Table")}
    replicas = {f"{name}_current" for name in ("products", "orders", "order_items", "customers")}
    for name in replicas:
        query = tables[name].get("view")["query"]
        assert f"`{PROJECT}.streamforge.{name}_changes`" in query and tables[name].get("view")["useLegacySql"] is False


def test_every_keyed_table_has_a_current_view_over_it_and_nothing_else_does(deployment) -> None:
    """BigQuery appends every pane and every replayed row; ``<table>_current`` keeps one row
    per key, as the DuckDB table does (streamforge/warehouse_tables.py)."""
    tables = {t.get("tableId"): t for t in deployment.of_type("bigquery/table:Table")}
    replicas = {f"{name}_current" for name in ("products", "orders", "order_items", "customers")}
    views = {name for name, t in tables.items() if t.get("view")} - replicas
    keyed = {
        name
        for name, t in tables.items()
        if not t.get("view") and not name.endswith("_current_changes") and name not in DAILY_TABLES
    } - {"dead_letter"}
    assert views == {f"{name}_current" for name in keyed}
    for name in keyed:
        query = tables[f"{name}_current"].get("view")["query"]
        assert f"FROM `{PROJECT}.streamforge.{name}`" in query and "ROW_NUMBER() OVER (PARTITION BY" in query
    assert "ORDER BY event_count DESC, pane_index DESC" in tables["user_sessions_current"].get("view")["query"]
    assert "ORDER BY pane_index DESC" in tables["revenue_per_minute_current"].get("view")["query"]


#: How the Spark BigQuery connector types a DataFrame's columns (its documented mapping).
_CONNECTOR = {T.StringType: "STRING", T.LongType: "INTEGER", T.DoubleType: "FLOAT", T.DateType: "DATE"}


def _connector_type(kind: T.DataType) -> str:
    if isinstance(kind, T.DecimalType):
        return "NUMERIC" if kind.precision <= 38 and kind.scale <= 9 else "BIGNUMERIC"
    return _CONNECTOR[type(kind)]


def test_the_daily_tables_equal_what_the_batch_writes(deployment) -> None:
    tables = {t.get("tableId"): t for t in deployment.of_type("bigquery/table:Table")}
    for name in DAILY_TABLES:
        created = json.loads(tables[name].get("schema"))
        written = spark_schema(name)
        assert [(c["name"], c["type"], c["mode"]) for c in created] == [
            (f.name, _connector_type(f.dataType), "NULLABLE" if f.nullable else "REQUIRED") for f in written.fields
        ]
        assert tables[name].get("timePartitioning") == {"type": "DAY", "field": "date"}  # the job's datePartition
