"""Avro schema compatibility: can data written with one schema be read with another?

Implements the resolution rules of the Avro specification ("Schema Resolution") and reports
every place where a reader would fail, with a path. StreamForge requires FULL_TRANSITIVE
compatibility between the versions of a subject: every version reads every other version's
data, so producers and consumers can upgrade in any order.
"""

from __future__ import annotations

from itertools import permutations
from typing import Any, Iterable, Mapping

__all__ = ["full_transitive_problems", "reader_problems"]

_PROMOTIONS = {
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}
_NAMED = ("record", "enum", "fixed")


def reader_problems(reader: Mapping[str, Any], writer: Mapping[str, Any]) -> list[str]:
    """Why ``reader`` cannot read data written with ``writer`` (empty when it can)."""
    return _Resolver(reader, writer).check(reader, writer, reader.get("name", ""))


def full_transitive_problems(versions: Iterable[tuple[str, Mapping[str, Any]]]) -> list[str]:
    """Problems between every ordered pair of (label, definition) versions."""
    problems = []
    for (r_label, reader), (w_label, writer) in permutations(list(versions), 2):
        for problem in reader_problems(reader, writer):
            problems.append(f"{r_label} cannot read {w_label}: {problem}")
    return problems


class _Resolver:
    def __init__(self, reader: Mapping[str, Any], writer: Mapping[str, Any]):
        self.reader_named = _collect_named(reader)
        self.writer_named = _collect_named(writer)
        self.seen: set[tuple[str, str]] = set()

    def check(self, reader: Any, writer: Any, path: str) -> list[str]:
        reader = self._deref(reader, self.reader_named)
        writer = self._deref(writer, self.writer_named)
        if isinstance(writer, list):
            problems = []
            for branch in writer:
                problems += self.check(reader, branch, f"{path}<{_describe(branch)}>")
            return problems
        if isinstance(reader, list):
            attempts = [self.check(branch, writer, path) for branch in reader]
            if any(not a for a in attempts):
                return []
            return [f"{path}: writer type {_describe(writer)} matches no branch of the reader union"]
        r_kind, w_kind = _kind(reader), _kind(writer)
        if r_kind != w_kind:
            if (
                w_kind in _PROMOTIONS
                and r_kind in _PROMOTIONS[w_kind]
                and not _logical(reader)
                and not _logical(writer)
            ):
                return []
            return [f"{path}: type changed from {_describe(writer)} to {_describe(reader)}"]
        problems = self._check_logical(reader, writer, path)
        if r_kind in _NAMED:
            if not _same_name(reader, writer):
                return problems + [f"{path}: {r_kind} name changed from {writer['name']} to {reader['name']}"]
            key = (_fullname(reader), _fullname(writer))
            if key in self.seen:
                return problems
            self.seen.add(key)
        if r_kind == "record":
            problems += self._check_record(reader, writer, path)
        elif r_kind == "enum":
            missing = [s for s in writer["symbols"] if s not in reader["symbols"]]
            if missing and "default" not in reader:
                problems.append(
                    f"{path}: reader enum {reader['name']} lacks symbol(s) {', '.join(missing)} and has no default"
                )
        elif r_kind == "fixed":
            if reader["size"] != writer["size"]:
                problems.append(f"{path}: fixed size changed from {writer['size']} to {reader['size']}")
        elif r_kind == "array":
            problems += self.check(reader["items"], writer["items"], f"{path}[]")
        elif r_kind == "map":
            problems += self.check(reader["values"], writer["values"], f"{path}{{}}")
        return problems

    def _check_record(self, reader: Mapping[str, Any], writer: Mapping[str, Any], path: str) -> list[str]:
        problems = []
        writer_fields = {f["name"]: f for f in writer["fields"]}
        for field in reader["fields"]:
            names = [field["name"], *field.get("aliases", [])]
            match = next((writer_fields[n] for n in names if n in writer_fields), None)
            where = f"{path}.{field['name']}"
            if match is None:
                if "default" not in field:
                    problems.append(f"{where}: reader field has no default and the writer does not write it")
            else:
                problems += self.check(field["type"], match["type"], where)
        return problems

    @staticmethod
    def _check_logical(reader: Any, writer: Any, path: str) -> list[str]:
        r_logical, w_logical = _logical(reader), _logical(writer)
        if r_logical != w_logical:
            return [f"{path}: logical type changed from {w_logical or 'none'} to {r_logical or 'none'}"]
        if r_logical == "decimal":
            if reader.get("scale", 0) != writer.get("scale", 0):
                return [f"{path}: decimal scale changed from {writer.get('scale', 0)} to {reader.get('scale', 0)}"]
            if reader["precision"] < writer["precision"]:
                return [f"{path}: decimal precision narrowed from {writer['precision']} to {reader['precision']}"]
        return []

    @staticmethod
    def _deref(avro_type: Any, named: Mapping[str, Any]) -> Any:
        if isinstance(avro_type, str) and avro_type in named:
            return named[avro_type]
        if isinstance(avro_type, dict) and avro_type.get("type") in named and avro_type.get("type") not in _NAMED:
            return named[avro_type["type"]]
        return avro_type


def _collect_named(definition: Any, namespace: str = "") -> dict[str, Any]:
    found: dict[str, Any] = {}

    def walk(node: Any, ns: str) -> None:
        if isinstance(node, list):
            for branch in node:
                walk(branch, ns)
        elif isinstance(node, dict):
            kind = node.get("type")
            if kind in _NAMED:
                full = _fullname(node, ns)
                found[full] = node
                found[node["name"].rpartition(".")[2]] = node
                ns = full.rpartition(".")[0]
            if kind == "record":
                for field in node["fields"]:
                    walk(field["type"], ns)
            elif kind == "array":
                walk(node["items"], ns)
            elif kind == "map":
                walk(node["values"], ns)

    walk(definition, namespace)
    return found


def _kind(avro_type: Any) -> str:
    return avro_type if isinstance(avro_type, str) else avro_type["type"]


def _logical(avro_type: Any) -> str | None:
    return avro_type.get("logicalType") if isinstance(avro_type, dict) else None


def _fullname(node: Mapping[str, Any], namespace: str = "") -> str:
    name = node["name"]
    if "." in name:
        return name
    ns = node.get("namespace", namespace)
    return f"{ns}.{name}" if ns else name


def _same_name(reader: Mapping[str, Any], writer: Mapping[str, Any]) -> bool:
    writer_short = writer["name"].rpartition(".")[2]
    names = {reader["name"].rpartition(".")[2], *(a.rpartition(".")[2] for a in reader.get("aliases", []))}
    return writer_short in names


def _describe(avro_type: Any) -> str:
    if isinstance(avro_type, str):
        return avro_type
    if isinstance(avro_type, list):
        return "[" + ", ".join(_describe(t) for t in avro_type) + "]"
    if avro_type.get("logicalType"):
        return f"{avro_type['type']}/{avro_type['logicalType']}"
    if avro_type.get("type") in _NAMED:
        return f"{avro_type['type']} {avro_type['name']}"
    return str(avro_type.get("type"))
