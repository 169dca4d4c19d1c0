"""Schema governance: published versions are immutable, versions stay mutually compatible.

``avro/published.json`` pins the fingerprint (definition without docs) of every published
version. ``check`` fails when a published file changed, when a version is not yet
published, or when two versions of a subject cannot read each other's data.
"""

from __future__ import annotations

import json
from pathlib import Path

from streamforge.schemas.compatibility import full_transitive_problems
from streamforge.schemas.versioned import SchemaRegistry

__all__ = ["PUBLISHED_FILE", "SchemaGovernanceError", "check", "publish"]

PUBLISHED_FILE = "published.json"


class SchemaGovernanceError(ValueError):
    """Publishing was refused; the message lists why."""


def check(directory: Path) -> list[str]:
    """Every problem with the schemas in ``directory``; empty when all is well."""
    registry = SchemaRegistry.from_directory(directory)
    unpublished, changed = _pin_problems(registry, _published(directory))
    return unpublished + changed + _compatibility_problems(registry)


def publish(directory: Path) -> list[str]:
    """Pin the versions not yet published and return their names.

    Refused when a published version changed or versions are incompatible.
    """
    registry = SchemaRegistry.from_directory(directory)
    published = _published(directory)
    _, changed = _pin_problems(registry, published)
    problems = changed + _compatibility_problems(registry)
    if problems:
        raise SchemaGovernanceError("; ".join(problems))
    added = []
    for schema in registry:
        key = _key(schema.subject, schema.version)
        if key not in published:
            published[key] = schema.fingerprint
            added.append(key)
    (directory / PUBLISHED_FILE).write_text(json.dumps(dict(sorted(published.items())), indent=2) + "\n")
    return added


def _key(subject: str, version: int) -> str:
    return f"{subject}.v{version}"


def _published(directory: Path) -> dict[str, str]:
    path = directory / PUBLISHED_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def _pin_problems(registry: SchemaRegistry, published: dict[str, str]) -> tuple[list[str], list[str]]:
    unpublished, changed = [], []
    for schema in registry:
        key = _key(schema.subject, schema.version)
        pinned = published.get(key)
        if pinned is None:
            unpublished.append(f"{key}: not published yet (run `streamforge schemas publish` once it is final)")
        elif pinned != schema.fingerprint:
            changed.append(
                f"{key}: changed after it was published; published versions are immutable, "
                f"add {_key(schema.subject, schema.version + 1)}.avsc instead"
            )
    return unpublished, changed


def _compatibility_problems(registry: SchemaRegistry) -> list[str]:
    problems = []
    for subject in registry.subjects():
        problems += full_transitive_problems((s.label, s.definition) for s in registry.versions(subject))
    return problems
