"""Which of StreamForge's extras are installed, read from the installed package's metadata (what
``pip install 'streamforge[EXTRA]'`` recorded), so that a command whose extra is missing says
which one to install, instead of starting and failing halfway on an import."""

from __future__ import annotations

import importlib.metadata as metadata
import re
from functools import cache

__all__ = ["DISTRIBUTION", "declared", "missing"]

DISTRIBUTION = "streamforge"
# pip writes an extra's requirement as `name[extras]==version; extra == "EXTRA"`; pyproject.toml
# uses no other marker.
_REQUIREMENT = re.compile(r'([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?[^;]*(?:;\s*extra\s*==\s*"([^"]+)")?\s*')


@cache
def _requirements() -> dict[str | None, list[tuple[str, tuple[str, ...]]]] | None:
    """Extra (None for the core) -> (distribution, its extras); None when StreamForge is not
    installed as a distribution (code run straight from a checkout)."""
    try:
        lines = metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        return None
    found: dict[str | None, list[tuple[str, tuple[str, ...]]]] = {}
    for line in lines:
        match = _REQUIREMENT.fullmatch(line)
        if match is None:
            raise ValueError(f"{DISTRIBUTION}'s metadata: cannot read the requirement {line!r}")
        name, extras, extra = match.groups()
        found.setdefault(extra, []).append((name, tuple(e.strip() for e in (extras or "").split(",") if e.strip())))
    return found


def declared(extra: str) -> list[str]:
    """The distributions StreamForge declares for the core and ``extra``, through the extras it
    names (``streamforge[...]``), sorted; empty when StreamForge is not installed."""
    requirements = _requirements()
    if requirements is None:
        return []
    if extra not in requirements:
        raise ValueError(f"{DISTRIBUTION} has no extra {extra!r}")
    names: set[str] = set()
    pending, seen = [None, extra], set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        for name, extras in requirements.get(current, []):
            if name == DISTRIBUTION:
                pending.extend(extras)
            else:
                names.add(name)
    return sorted(names)


def missing(extra: str) -> list[str]:
    """What ``pip install 'streamforge[EXTRA]'`` installs that is not installed, sorted: empty
    when the extra is installed, or when StreamForge runs from a checkout without being
    installed (then nothing can be told)."""
    absent = []
    for name in declared(extra):
        try:
            metadata.distribution(name)
        except metadata.PackageNotFoundError:
            absent.append(name)
    return absent
