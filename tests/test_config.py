"""Configuration: embedded defaults, overrides, and precise errors."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from streamforge.config import ConfigError, embedded_defaults, load_config
from tests.support.cli import run_cli


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "streamforge.toml"
    path.write_text(text)
    return path


def test_embedded_defaults() -> None:
    config = embedded_defaults()
    assert config.sessions.gap == timedelta(minutes=30)
    assert config.sessions.allowed_lateness == timedelta(minutes=10)
    assert config.fraud.rapid_orders_count == 3
    assert config.fraud.rapid_orders_window == timedelta(minutes=5)
    assert config.fraud.high_value_first_order == Decimal("5000.00")
    assert config.fraud.card_testing_window == timedelta(minutes=10)
    assert config.topics.fraud_alerts == "fraud-alerts"
    assert config.simulator.duration == timedelta(hours=2)


def test_a_file_overrides_only_what_it_sets(tmp_path: Path) -> None:
    config = load_config(_toml(tmp_path, '[fraud]\nrapid_orders_count = 5\nrapid_orders_window = "1h30m"\n'))
    assert config.fraud.rapid_orders_count == 5
    assert config.fraud.rapid_orders_window == timedelta(minutes=90)
    assert config.fraud.high_value_first_order == Decimal("5000.00")
    assert config.topics == embedded_defaults().topics


def test_environment_variable_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMFORGE_CONFIG", str(_toml(tmp_path, '[topics]\norders = "orders-v2"\n')))
    assert load_config().topics.orders == "orders-v2"
    assert embedded_defaults().topics.orders == "orders"


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "[fraud]\nrapid_order_count = 4\n",
            "unknown key 'fraud.rapid_order_count' (did you mean 'rapid_orders_count'?)",
        ),
        ("[frod]\n", "unknown key 'frod' (did you mean 'fraud'?)"),
        ('[fraud]\nrapid_orders_count = "three"\n', "'fraud.rapid_orders_count' must be an integer, got 'three'"),
        ("[fraud]\nrapid_orders_count = 2\n", "fraud.rapid_orders_count must be at least 3, got 2"),
        ('[sessions]\ngap = "half an hour"\n', "'sessions.gap' must be a duration"),
        ('[fraud]\nhigh_value_first_order = "lots"\n', "'fraud.high_value_first_order' must be a decimal number"),
        ("[fraud]\nhigh_value_first_order = 12.5\n", 'must be a decimal string such as "5000.00"'),
        ("[simulator]\nfraud_rate = 1.5\n", "simulator.fraud_rate must be between 0 and 1, got 1.5"),
        ('[simulator]\nstart = "tomorrow"\n', "simulator.start must be 'now' or an RFC 3339 time"),
        ('[simulator]\ncurrency = "usd"\n', "simulator.currency must be an ISO 4217 code"),
        ("topics = 3\n", "'topics' must be a table ([topics]), got 3"),
        ("[fraud\n", "not valid TOML"),
    ],
)
def test_bad_files_get_precise_errors(tmp_path: Path, text: str, message: str) -> None:
    path = _toml(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert message in str(caught.value)
    assert str(caught.value).startswith(f"{path}: ")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_cli_reports_a_bad_config_and_exits_2(tmp_path: Path) -> None:
    result = run_cli("--config", str(_toml(tmp_path, "[fraud]\nspeed = 1\n")), "schemas", "list")
    assert result.exit_code == 2
    assert "unknown key 'fraud.speed'" in result.output
