"""The Flex Templates: their spec files as Dataflow's own types read them, their regexes
against the library's checks, and the launcher building jobs from their parameters."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import GoogleCloudOptions
from google.cloud import dataflow_v1beta3 as dataflow

from beam_pipelines.common.io import SpecError
from beam_pipelines.dataflow import launcher
from beam_pipelines.dataflow.templates import TEMPLATES
from beam_pipelines.requests import analytics_request, cdc_request
from streamforge.config import load_config
from streamforge.packaging import REPO_ROOT
from tests.support.cli import run_entry_point
from tests.support.dataflow import ALERTS, BUCKET, IMAGE, WAREHOUSE, dataflow_args, dry_run, subscription, transforms
from tests.support.network import no_network


def test_the_written_specs_are_what_dataflow_reads(tmp_path: Path) -> None:
    written = run_entry_point("dataflow", "template", "--image", IMAGE, "--output", str(tmp_path))
    assert "gcloud dataflow flex-template build" in written.stdout
    for name, template in TEMPLATES.items():
        spec = dataflow.ContainerSpec.from_json((tmp_path / f"{name}.json").read_text())  # unknown fields raise
        assert spec.image == IMAGE and spec.default_environment.sdk_container_image == IMAGE
        assert spec.sdk_info.language == dataflow.SDKInfo.Language.PYTHON
        metadata = dataflow.TemplateMetadata.from_json((tmp_path / f"{name}-metadata.json").read_text())
        assert metadata == spec.metadata
        assert [p.name for p in metadata.parameters] == [p.name for p in template.parameters]
        for parameter in metadata.parameters:
            assert parameter.label and parameter.help_text and parameter.regexes
    analytics = {
        p.name: p
        for p in dataflow.TemplateMetadata.from_json((tmp_path / "analytics-metadata.json").read_text()).parameters
    }
    assert not analytics["job"].is_optional and [o.value for o in analytics["job"].enum_options] == [
        "sessions",
        "revenue",
        "fraud",
        "all",
    ]
    assert analytics["alerts_topic"].param_type == dataflow.ParameterType.PUBSUB_TOPIC
    assert analytics["raw_events"].param_type == dataflow.ParameterType.BOOLEAN


GOOD = {
    "input": [
        subscription("orders-beam"),
        f"{BUCKET}/orders/*.jsonl",
        f"{BUCKET}/day",
        "kafka://broker-1:9092,broker-2:9092/orders?group=shop&start=2026-12-01T00:00:00Z",
    ],
    "warehouse": [WAREHOUSE, "bigquery://my-proj-123.shop_analytics"],
    "alerts_topic": [ALERTS],
    "config": [f"{BUCKET}/streamforge.toml"],
    "raw_events": ["true", "false"],
    "job": ["sessions", "all"],
}
BAD = {
    "input": [
        "file:///tmp/orders.jsonl",
        "gs://X/orders.jsonl",
        "pubsub://orders",
        f"{BUCKET}",
        "kafka://shop:secret@broker-1:9092/orders",
        "kafka:///orders",
    ],
    "warehouse": ["duckdb://out/w.duckdb", "bigquery://p.d", "my-proj-123.analytics"],
    "alerts_topic": ["fraud-alerts", f"pubsub://{ALERTS}"],
    "config": [f"{BUCKET}/streamforge.yaml", "/etc/streamforge.toml"],
    "raw_events": ["yes", "True"],
    "job": ["cdc", "everything"],
}


@pytest.mark.parametrize("name", sorted(GOOD))
def test_parameter_regexes_let_through_exactly_the_forms_a_job_can_use(name: str) -> None:
    regex = re.compile(TEMPLATES["analytics"].parameter(name).regex)
    assert all(regex.match(value) for value in GOOD[name])
    assert not any(regex.match(value) for value in BAD[name])


def test_what_the_regexes_let_through_the_library_accepts() -> None:
    for value in GOOD["input"]:
        analytics_request("revenue", load_config(), warehouse=WAREHOUSE, input_url=value)
    for value in GOOD["warehouse"]:
        analytics_request("revenue", load_config(), warehouse=value, input_url=f"{BUCKET}/o.jsonl")
    cdc_input = re.compile(TEMPLATES["cdc"].parameter("input").regex)
    assert cdc_input.match(subscription("cdc-{table}")) and cdc_input.match(f"{BUCKET}/cdc")
    assert cdc_input.match("kafka://broker-1:9092")
    cdc_request(load_config(), input_url="kafka://broker-1:9092", warehouse=WAREHOUSE)
    assert not cdc_input.match(subscription("cdc-products")) and not cdc_input.match("file:///tmp/cdc")


def _launch(*args: str, image: str | None = IMAGE):
    with no_network():
        return launcher.launch([*args, *dataflow_args(image=image)])


def test_the_launcher_builds_the_job_streamforge_run_builds_for_the_same_values() -> None:
    values = [
        "--job=all",
        f"--clickstream={subscription('clickstream-beam')}",
        f"--orders={subscription('orders-beam')}",
        f"--warehouse={WAREHOUSE}",
        f"--alerts_topic={ALERTS}",
        "--raw_events=true",
    ]
    launched = _launch(*values)
    assert launched.job_id is None and launched.name == "streamforge-all" and launched.streaming
    direct = dry_run(
        analytics_request(
            "all",
            load_config(),
            warehouse=WAREHOUSE,
            clickstream=subscription("clickstream-beam"),
            orders=subscription("orders-beam"),
            alerts_topic=ALERTS,
            raw_events=True,
        )
    )
    assert set(transforms(launched)) == set(transforms(direct))
    assert "Write order_events/Write to BigQuery" in transforms(launched)


def test_the_launcher_builds_the_cdc_job_and_reads_a_settings_file(tmp_path: Path) -> None:
    cdc = _launch(f"--input={BUCKET}/cdc", f"--warehouse={WAREHOUSE}")
    assert cdc.name == "streamforge-cdc" and not cdc.streaming
    settings = tmp_path / "streamforge.toml"
    settings.write_text('[cdc]\nreplicas = ["products"]\n')
    request = launcher.request_from(
        TEMPLATES["cdc"], {"input": f"{BUCKET}/cdc", "warehouse": WAREHOUSE, "config": str(settings)}
    )
    assert request.config.cdc.replicas == ("products",)
    settings.write_text("[cdc]\nreplica = 1\n")
    with pytest.raises(SpecError, match=re.escape(f"{settings}: unknown key 'cdc.replica'")):
        launcher.request_from(
            TEMPLATES["cdc"], {"input": f"{BUCKET}/cdc", "warehouse": WAREHOUSE, "config": str(settings)}
        )


def test_the_launcher_refuses_what_it_cannot_launch(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(SpecError, match="no sdk_container_image: the workers would have no StreamForge"):
        _launch("--job=fraud", f"--input={BUCKET}/orders.jsonl", f"--warehouse={WAREHOUSE}", image=None)
    with pytest.raises(SpecError, match="the parameter warehouse is required"):
        _launch("--job=fraud", f"--input={BUCKET}/orders.jsonl")
    code = launcher.main(
        ["--job=fraud", f"--input={BUCKET}/orders.jsonl", "--warehouse=duckdb://w.duckdb", *dataflow_args()]
    )
    assert code == 2 and "a DuckDB file would be written on the workers' disks" in caplog.text


def test_a_template_job_runs_on_dataflow_without_saying_so() -> None:
    """The launcher gets the template's parameters and Dataflow's options, perhaps no --runner."""
    args = [a for a in dataflow_args() if not a.startswith("--runner")]
    with no_network():
        launched = launcher.launch(
            ["--job=sessions", f"--input={BUCKET}/clicks/*.jsonl", f"--warehouse={WAREHOUSE}", *args]
        )
    assert launched.name == "streamforge-sessions" and launched.job.options.view_as(GoogleCloudOptions).labels == [
        "streamforge-job=sessions"
    ]


def test_the_docs_name_every_template_parameter() -> None:
    docs = (REPO_ROOT / "docs" / "dataflow.md").read_text(encoding="utf-8")
    for template in TEMPLATES.values():
        assert all(f"`{parameter.name}`" in docs for parameter in template.parameters), template.name
