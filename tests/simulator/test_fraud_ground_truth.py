"""Fraud labels are the ground truth: every labelled case is in the data, and nothing
unlabelled in the data matches a pattern. Checked with the SQL restatement of the rules in
tests/support/reference.py, under the default rules and under unusual ones."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from streamforge.config import FraudRules, load_config
from tests.support.cli import simulate_to
from tests.support.reference import fraud_matches, load
from tests.support.reference import sql_rules as _rules
from tests.support.samples import UNUSUAL_RULES


def _labels(directory: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in (directory / "fraud_labels.jsonl").read_bytes().splitlines()]


def _check_ground_truth(directory: Path, rules: FraudRules) -> None:
    labels = _labels(directory)
    con = load(directory)
    matched = fraud_matches(con, _rules(rules))
    labelled = {(label["pattern"], label["user_id"]) for label in labels}
    assert labelled - matched == set(), "labelled cases missing from the data"
    assert matched - labelled == set(), "data matches a pattern nobody labelled"
    summary = orjson.loads((directory / "summary.json").read_bytes())
    assert sum(summary["fraud_cases"].values()) == len(labels)
    # Each label points at real events of its user.
    orders = {row[0]: row[1:] for row in con.execute("SELECT event_id, user_id, order_id FROM orders").fetchall()}
    for label in labels:
        assert label["event_ids"], label
        for event_id in label["event_ids"]:
            user_id, order_id = orders[event_id]
            assert user_id == label["user_id"] and order_id in label["order_ids"]
        assert datetime.fromisoformat(label["start"]) <= datetime.fromisoformat(label["end"])
        assert label["description"]


def test_default_rules(default_run: Path) -> None:
    _check_ground_truth(default_run, load_config().fraud)
    patterns = {label["pattern"] for label in _labels(default_run)}
    assert patterns == {"RAPID_ORDERS", "HIGH_VALUE_FIRST_ORDER", "LOCATION_ANOMALY", "CARD_TESTING"}


def test_unusual_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "rules.toml"
    config.write_text(UNUSUAL_RULES)
    monkeypatch.setenv("STREAMFORGE_CONFIG", str(config))
    run = simulate_to(tmp_path / "run", "--duration", "3h", "--fraud-rate", "0.02", "--seed", "11")
    _check_ground_truth(run, load_config(config).fraud)
    by_pattern = {
        p: [label for label in _labels(run) if label["pattern"] == p] for p in ("RAPID_ORDERS", "CARD_TESTING")
    }
    assert all(len(label["order_ids"]) >= 4 for label in by_pattern["RAPID_ORDERS"])
    assert by_pattern["CARD_TESTING"]


def test_rapid_orders_labels_fit_the_window(default_run: Path) -> None:
    for label in _labels(default_run):
        if label["pattern"] == "RAPID_ORDERS":
            span = datetime.fromisoformat(label["end"]) - datetime.fromisoformat(label["start"])
            assert len(label["order_ids"]) >= 3 and span.total_seconds() <= 300


def test_only_chosen_patterns_are_injected(tmp_path: Path) -> None:
    run = simulate_to(
        tmp_path, "--duration", "1h", "--fraud-rate", "0.05", "--fraud-patterns", "card_testing,rapid_orders"
    )
    assert {label["pattern"] for label in _labels(run)} == {"CARD_TESTING", "RAPID_ORDERS"}
    _check_ground_truth(run, load_config().fraud)


def test_no_fraud_means_no_match(tmp_path: Path) -> None:
    run = simulate_to(tmp_path, "--duration", "1h", "--fraud-rate", "0")
    assert _labels(run) == []
    assert fraud_matches(load(run), _rules(load_config().fraud)) == set()
