"""The ``streamforge`` command through its installed entry point."""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
from pathlib import Path

from streamforge import __version__
from streamforge.schemas import SCHEMA_DIR
from tests.support.cli import entry_point_env, run_cli, run_entry_point


def test_help_lists_the_commands() -> None:
    out = run_entry_point("--help").stdout
    assert "simulate" in out and "schemas" in out and "--config" in out


def test_simulate_help_documents_every_option() -> None:
    out = run_entry_point("simulate", "--help").stdout
    for option in (
        "--output",
        "--seed",
        "--start",
        "--duration",
        "--rate",
        "--sessions-per-second",
        "--users",
        "--fraud-rate",
        "--fraud-patterns",
        "--malformed",
        "--duplicates",
        "--format",
        "--labels",
        "--quiet",
    ):
        assert option in out, option
    assert "file://DIR" in out and "kafka://HOST:PORT" in out and "pubsub://PROJECT" in out


def test_version_and_module_entry() -> None:
    assert run_entry_point("--version").stdout.strip() == f"streamforge {__version__}"
    module = subprocess.run(
        [sys.executable, "-m", "streamforge", "--version"],
        capture_output=True,
        text=True,
        env=entry_point_env(),
        check=True,
    )
    assert module.stdout.strip() == f"streamforge {__version__}"


def test_no_arguments_shows_help() -> None:
    process = run_entry_point(check=False)
    assert "Usage: streamforge" in process.stdout + process.stderr


def test_unknown_command_exits_2() -> None:
    process = run_entry_point("simulat", check=False)
    assert process.returncode == 2


def test_simulate_writes_files_and_prints_a_summary(tmp_path: Path) -> None:
    process = run_entry_point("simulate", "--output", f"file://{tmp_path}", "--duration", "10m")
    for heading in (
        "Simulation summary",
        "Clickstream events by type",
        "Order events by status",
        "Injected fraud cases by pattern",
        "events/s",
    ):
        assert heading in process.stderr
    assert (tmp_path / "clickstream.jsonl").stat().st_size > 0
    assert json.loads((tmp_path / "summary.json").read_text())["sim_end"] == "2026-11-01T08:10:00.000Z"


def test_config_file_applies(tmp_path: Path) -> None:
    config = tmp_path / "quiet-shop.toml"
    config.write_text('[simulator]\nfraud_rate = 0.0\nstart = "2027-01-01T00:00:00Z"\n')
    run_entry_point(
        "--config", str(config), "simulate", "--output", f"file://{tmp_path / 'out'}", "--duration", "20m", "-q"
    )
    assert (tmp_path / "out" / "fraud_labels.jsonl").read_text() == ""
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["sim_start"] == "2027-01-01T00:00:00.000Z"


def test_option_errors_name_the_option() -> None:
    cases = {
        ("--users", "0"): "--users must be at least 1, got 0",
        ("--fraud-rate", "1.5"): "--fraud-rate must be between 0 and 1",
        ("--duration", "5x"): "--duration: '5x' is not a duration",
        ("--rate", "-1"): "--rate must be positive",
        ("--rate", "10", "--start", "2026-01-01T00:00:00Z"): "--start cannot be set with --rate",
        ("--fraud-patterns", "FOO"): "unknown pattern(s) FOO",
        ("--output", "ftp://x"): "expected file://DIR, pubsub://PROJECT, kafka://HOST:PORT or - for stdout",
    }
    for args, message in cases.items():
        result = run_cli("simulate", *args)
        assert result.exit_code in (1, 2), args
        assert message in result.output, (args, result.output)


def test_schemas_commands() -> None:
    listing = run_entry_point("schemas", "list").stdout
    for subject in (
        "clickstream_event",
        "order_event",
        "fraud_alert",
        "session_aggregate",
        "revenue_per_minute",
        "revenue_by_category_region",
        "dead_letter",
    ):
        assert subject in listing
    shown = json.loads(run_entry_point("schemas", "show", "order_event").stdout)
    assert shown == json.loads((SCHEMA_DIR / "order_event.v1.avsc").read_text())
    assert "published and compatible" in run_entry_point("schemas", "check").stdout
    missing = run_entry_point("schemas", "show", "orders", check=False)
    assert missing.returncode == 2 and "unknown schema 'orders'" in missing.stderr


def test_functions_commands_refuse_unknown_functions_and_a_missing_secret(monkeypatch) -> None:
    result = run_cli("functions", "serve", "payments")
    assert (
        result.exit_code == 2 and "unknown function 'payments': choose from alert_dispatcher, ingest" in result.output
    )
    monkeypatch.delenv("STREAMFORGE_WEBHOOK_SECRET", raising=False)
    result = run_cli("webhook-sink")
    assert result.exit_code == 2 and "$STREAMFORGE_WEBHOOK_SECRET is not set" in result.output


def test_a_command_loads_only_the_libraries_it_uses() -> None:
    """`streamforge simulate` does not import Beam, Spark or DuckDB (each command's module is
    loaded when the command runs)."""
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom streamforge.cli import app\n"
        "result = CliRunner().invoke(app, ['simulate', '--output', '-', '--duration', '1m', '--quiet'])\n"
        "assert result.exit_code == 0, result.output\n"
        "print(sorted(m for m in ('apache_beam', 'beam_pipelines', 'pyspark', 'duckdb', 'batch') if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=entry_point_env(), check=True
    )
    assert loaded.stdout.strip().splitlines()[-1] == "[]"


def test_a_command_whose_extra_is_not_installed_says_which_to_install(monkeypatch) -> None:
    """As the installed metadata says: here apache-beam is made to look absent (the clean
    environments of test_dependencies.py hold the real thing)."""
    real = importlib.metadata.distribution

    def without_beam(name: str):
        if name == "apache-beam":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", without_beam)
    listing = run_cli("--help").output
    assert re.search(r"^  run +not installed: streamforge\[pipelines\]$", listing, re.MULTILINE), listing
    assert re.search(r"^  simulate +Generate", listing, re.MULTILINE)
    result = run_cli("run", "all", "--input", "file:///tmp")
    assert result.exit_code == 2
    assert (
        "`streamforge run` needs apache-beam, which is not installed: pip install 'streamforge[pipelines]'"
        in result.output
    )
