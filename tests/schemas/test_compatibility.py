"""Schema evolution: published versions are frozen, new versions must stay readable both ways.

Each case is also checked against fastavro's own schema resolution, so the checker is
compared with what an Avro reader actually does, not with itself.
"""

from __future__ import annotations

import copy
import io
import json
import shutil
from pathlib import Path
from typing import Any, Callable

import fastavro
import pytest

from streamforge.schemas import SCHEMA_DIR, get_schema
from streamforge.schemas.compatibility import reader_problems
from streamforge.schemas.governance import SchemaGovernanceError, check, publish
from tests.support.cli import run_cli
from tests.support.samples import SAMPLES

Change = Callable[[dict[str, Any]], None]


def _field(definition: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in definition["fields"] if f["name"] == name)


def _add_field(field: dict[str, Any]) -> Change:
    return lambda d: d["fields"].append(field)


def _drop_field(name: str) -> Change:
    return lambda d: d["fields"].remove(_field(d, name))


def _set_type(name: str, avro_type: Any) -> Change:
    return lambda d: _field(d, name).update(type=avro_type)


def _add_order_status(d: dict[str, Any]) -> None:
    _field(d, "status")["type"]["symbols"].append("REFUNDED")


BREAKING: dict[str, tuple[Change, dict[str, Any]]] = {
    # name: (change to order_event v1 -> v2, a v2 record that exercises it)
    "new required field": (_add_field({"name": "channel", "type": "string"}), {"channel": "web"}),
    "removed required field": (_drop_field("ip_country"), {}),
    "type changed": (_set_type("user_id", "long"), {"user_id": 7}),
    "enum symbol added without default": (_add_order_status, {"status": "REFUNDED"}),
    "int widened to long (not forward compatible)": (
        lambda d: _field(d, "items")["type"]["items"]["fields"][2].update(type="long"),
        {},
    ),
}
COMPATIBLE: dict[str, tuple[Change, dict[str, Any]]] = {
    "new optional field with default": (
        _add_field({"name": "channel", "type": ["null", "string"], "default": None}),
        {"channel": "web"},
    ),
    "new field with a default value": (_add_field({"name": "priority", "type": "int", "default": 0}), {"priority": 2}),
    "doc changed": (lambda d: _field(d, "user_id").update(doc="Who bought."), {}),
}


def _v2(change: Change) -> dict[str, Any]:
    definition = copy.deepcopy(get_schema("order_event").definition)
    change(definition)
    return definition


def _avro_reads(reader: dict[str, Any], writer: dict[str, Any], record: dict[str, Any]) -> bool:
    """What fastavro does: can ``reader`` read ``record`` written with ``writer``?"""
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(copy.deepcopy(writer)), record)
    buffer.seek(0)
    try:
        fastavro.schemaless_reader(
            buffer, fastavro.parse_schema(copy.deepcopy(writer)), fastavro.parse_schema(copy.deepcopy(reader))
        )
        return True
    except Exception:  # fastavro raises several types on resolution failure: any of them is "cannot read"
        return False


def _records(v2: dict[str, Any], extra: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A v1 record, and a v2 record with ``extra`` exercising the change."""
    base = get_schema("order_event").validate(SAMPLES["order_event"])
    names2 = {f["name"] for f in v2["fields"]}
    return base, {k: v for k, v in {**base, **extra}.items() if k in names2}


def _verdicts(change: Change, extra: dict[str, Any]) -> tuple[list[str], bool]:
    """The checker's problems both ways between order_event v1 and its changed v2, and
    whether fastavro really reads both ways."""
    v1 = get_schema("order_event").definition
    v2 = _v2(change)
    record1, record2 = _records(v2, extra)
    problems = reader_problems(v2, v1) + reader_problems(v1, v2)
    return problems, _avro_reads(v2, v1, record1) and _avro_reads(v1, v2, record2)


@pytest.mark.parametrize("name", sorted(BREAKING))
def test_breaking_changes_are_reported_and_really_break_a_reader(name: str) -> None:
    problems, fastavro_reads = _verdicts(*BREAKING[name])
    assert problems, name
    assert not fastavro_reads, f"fastavro reads both ways, yet the checker says: {problems}"


@pytest.mark.parametrize("name", sorted(COMPATIBLE))
def test_compatible_changes_pass_and_really_read_both_ways(name: str) -> None:
    problems, fastavro_reads = _verdicts(*COMPATIBLE[name])
    assert problems == []
    assert fastavro_reads


def test_problems_name_the_field() -> None:
    problems = reader_problems(_v2(BREAKING["type changed"][0]), get_schema("order_event").definition)
    assert problems == ["OrderEvent.user_id: type changed from string to long"]


def test_shipped_schemas_are_published_and_compatible() -> None:
    assert check(SCHEMA_DIR) == []


@pytest.fixture()
def schema_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "avro"
    shutil.copytree(SCHEMA_DIR, directory)
    return directory


def _write(directory: Path, name: str, definition: dict[str, Any]) -> None:
    (directory / name).write_text(json.dumps(definition, indent=2))


def test_check_fails_on_an_incompatible_new_version(schema_dir: Path) -> None:
    _write(schema_dir, "order_event.v2.avsc", _v2(BREAKING["removed required field"][0]))
    problems = check(schema_dir)
    assert any("order_event v1 cannot read order_event v2" in p and "ip_country" in p for p in problems)
    result = run_cli("schemas", "check", "--dir", str(schema_dir))
    assert result.exit_code == 1
    assert "ip_country" in result.output
    with pytest.raises(SchemaGovernanceError):
        publish(schema_dir)


def test_a_published_version_cannot_change(schema_dir: Path) -> None:
    definition = copy.deepcopy(get_schema("order_event").definition)
    _field(definition, "user_id")["maxLength"] = 128
    _write(schema_dir, "order_event.v1.avsc", definition)
    assert any("order_event.v1: changed after it was published" in p for p in check(schema_dir))


def test_doc_edits_keep_the_fingerprint(schema_dir: Path) -> None:
    _write(schema_dir, "order_event.v1.avsc", _v2(COMPATIBLE["doc changed"][0]))
    assert check(schema_dir) == []


def test_publishing_a_compatible_version_pins_it(schema_dir: Path) -> None:
    _write(schema_dir, "order_event.v2.avsc", _v2(COMPATIBLE["new optional field with default"][0]))
    assert any("order_event.v2: not published yet" in p for p in check(schema_dir))
    result = run_cli("schemas", "publish", "--dir", str(schema_dir))
    assert result.exit_code == 0 and "order_event.v2" in result.output
    assert check(schema_dir) == []
    pins = json.loads((schema_dir / "published.json").read_text())
    assert "order_event.v2" in pins and pins["order_event.v1"] == get_schema("order_event").fingerprint
