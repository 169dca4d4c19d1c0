"""Bounded Kafka input against a real broker (Tansu on 127.0.0.1): the simulator's output
produced to 3-partition topics in JSON and in the Confluent wire format, read by `run all`,
gives the same tables as the same simulation read from files, with every message accounted
for; a consumer group's second read starts where the first committed."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest

from beam_pipelines.requests import analytics_request
from beam_pipelines.runner import JobReport, pipeline_options, run
from streamforge.config import Config, load_config
from streamforge.kafka import REGISTRY_AUTH_ENV
from streamforge.schemas import get_schema
from tests.support.cli import run_cli, simulate_to
from tests.support.kafka import produce
from tests.support.samples import sample
from tests.support.schema_registry import schema_registry

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
SIMULATION = ("--duration", "20m", "--malformed", "0.02", "--duplicates", "0.02", "--seed", "7")
#: Every table `run all` writes, each ordered by its key columns.
TABLES = {
    "user_sessions": "SELECT * FROM user_sessions ORDER BY session_id",
    "revenue_per_minute": "SELECT * FROM revenue_per_minute ORDER BY ALL",
    "revenue_by_category_region": "SELECT * FROM revenue_by_category_region ORDER BY ALL",
    "fraud_alerts": "SELECT * EXCLUDE (detected_at) FROM fraud_alerts ORDER BY alert_id",
}


def tables(warehouse: Path) -> dict[str, list[tuple]]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return {name: con.execute(sql).fetchall() for name, sql in TABLES.items()}


def run_job(job: str, input_url: str, warehouse: Path, config: Config | None = None) -> JobReport:
    request = analytics_request(job, config or load_config(), warehouse=f"duckdb://{warehouse}", input_url=input_url)
    return run(request, pipeline_options(request))


@pytest.fixture(scope="module")
def from_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, JobReport]:
    directory = simulate_to(tmp_path_factory.mktemp("kafka-reference"), *SIMULATION)
    warehouse = directory / "warehouse.duckdb"
    return warehouse, run_job("all", f"file://{directory}", warehouse)


@pytest.mark.parametrize("fmt", ["json", "confluent"])
def test_bounded_kafka_read_equals_the_files(
    kafka: str, from_files: tuple[Path, JobReport], tmp_path: Path, fmt: str
) -> None:
    """The same simulation (seed 7): the valid events are the same in every format; the injected
    faults are drawn per format (binary ones for Avro), so only JSON's accounting equals the files'."""
    config_file = tmp_path / "topics.toml"
    # topics of this test's own (the session's broker is shared; tests/simulator uses clicks-FMT)
    config_file.write_text(f'[topics]\nclickstream = "input-clicks-{fmt}"\norders = "input-orders-{fmt}"\n')
    result = run_cli(
        "--config", str(config_file), "simulate", "--output", f"kafka://{kafka}", "--format", fmt, *SIMULATION
    )
    assert result.exit_code == 0, result.output
    written = int(re.search(r"messages written\D*([\d,]+)", result.output).group(1).replace(",", ""))
    warehouse = tmp_path / "warehouse.duckdb"
    report = run_job("all", f"kafka://{kafka}?until=end", warehouse, load_config(config_file))
    reference_warehouse, reference = from_files
    assert tables(warehouse) == tables(reference_warehouse)
    accounting = {stream: report.accounting(stream) for stream in ("clickstream", "orders")}
    assert sum(read for read, *_ in accounting.values()) == written  # every message produced was read
    for stream, (read, events, dead, duplicates) in accounting.items():
        assert read == events + dead + duplicates
        assert events == reference.accounting(stream)[1]
        assert dead > 0 and duplicates > 0
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM dead_letter").fetchone()[0] == sum(a[2] for a in accounting.values())
    if fmt == "json":
        assert accounting == {stream: reference.accounting(stream) for stream in accounting}


def test_a_group_reads_on_from_its_committed_offsets(kafka: str, tmp_path: Path) -> None:
    topic = "orders-committed"
    first = [_order(i) for i in range(50)]
    produce(kafka, topic, first, partitions=3)
    url = f"kafka://{kafka}/{topic}?group=nightly&until=end"
    assert run_job("revenue", url, tmp_path / "a.duckdb").accounting("orders")[0] == 50
    produce(kafka, topic, [_order(i) for i in range(50, 80)], partitions=3)
    assert run_job("revenue", url, tmp_path / "b.duckdb").accounting("orders")[0] == 30  # only what came after
    # Without a group nothing is committed: from the start every time.
    assert run_job("revenue", f"kafka://{kafka}/{topic}?until=end", tmp_path / "c.duckdb").accounting("orders")[0] == 80


def test_a_missing_topic_is_a_clear_error(kafka: str, tmp_path: Path) -> None:
    result = run_cli(
        "run",
        "revenue",
        "--input",
        f"kafka://{kafka}/no-such-topic?until=end",
        "--warehouse",
        f"duckdb://{tmp_path / 'w.duckdb'}",
    )
    assert result.exit_code == 2
    assert f"Kafka at {kafka}: topic no-such-topic" in result.output


def _order(i: int) -> bytes:
    schema = get_schema("order_event")
    return schema.to_json(sample("order_event", event_id=f"k-{i}", order_id=f"K{i}", status="PAID"))


def test_confluent_ids_from_a_schema_registry_and_unknown_ids_dead_lettered(
    kafka: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Id 7 is another producer's registration of the order schema (the registry knows it), id 8
    nobody's; our own ids need no registry. Each id is asked for once per worker, not per message."""
    schema = get_schema("order_event")
    topic = "orders-registry"

    def framed(schema_id: int, i: int) -> tuple[bytes, list[tuple[str, bytes]]]:
        record = sample("order_event", event_id=f"r-{i}", order_id=f"R{i}", status="PAID")
        body = schema.to_avro(record)
        return (
            b"\x00" + schema_id.to_bytes(4, "big") + body,
            [("encoding", b"confluent"), ("event_id", f"r-{i}".encode())],
        )

    messages = [framed(7, i) for i in range(20)] + [framed(8, i) for i in range(20, 25)]
    messages += [
        (
            schema.to_confluent(sample("order_event", event_id=f"r-{i}", order_id=f"R{i}", status="PAID")),
            [("encoding", b"confluent"), ("event_id", f"r-{i}".encode())],
        )
        for i in range(25, 30)
    ]
    produce(kafka, topic, messages)
    monkeypatch.setenv(REGISTRY_AUTH_ENV, "reader:s3cret")
    with schema_registry({7: schema.definition}) as registry:
        url = f"kafka://{kafka}/{topic}?until=end&registry={registry.url}"
        report = run_job("revenue", url, tmp_path / "w.duckdb")
    assert report.accounting("orders") == (30, 25, 5, 0)
    assert set(registry.lookups) == {7, 8} and max(registry.lookups.values()) <= 2  # cached per parse worker
    assert all(h.get("Authorization") == "Basic cmVhZGVyOnMzY3JldA==" for h in registry.headers)
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        errors = [
            row[0] for row in con.execute("SELECT error FROM dead_letter WHERE reason = 'invalid_avro'").fetchall()
        ]
    assert len(errors) == 5 and all(
        "schema registry http://127.0.0.1:" in e and "no schema id 8 (HTTP 404" in e for e in errors
    )
    # Without the registry, id 7 is unknown too.
    without = run_job("revenue", f"kafka://{kafka}/{topic}?until=end", tmp_path / "x.duckdb")
    assert without.accounting("orders") == (30, 5, 25, 0)
