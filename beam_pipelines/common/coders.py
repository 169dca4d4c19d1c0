"""Coders with an explicit, versioned layout for what streaming jobs keep: state and the
accumulators of windowed combines.

A streaming job's state outlives the code that wrote it: ``--update`` hands it to the new
version of the job. ``PickleCoder`` would keep Python objects by class path and attribute
layout, so moving a module or adding a field would leave the running job's state unreadable.
These coders write ``[version, field, ...]`` as JSON (orjson): plain values only, decimals as
strings. A new layout gets a new version, and the reader of the old one stays, so a job
updated over old state reads it.

Each job defines its coders beside its wiring (``*/pipeline.py``); the job graph names a coder
by its class path, so they stay there. Batch jobs are never updated: their accumulators keep
Beam's default coder (the fastest here).
"""

from __future__ import annotations

from typing import Any

import orjson
from apache_beam.coders import Coder

__all__ = ["LayoutCoder"]


class LayoutCoder(Coder):
    """A value as ``[version, *fields(value)]`` in JSON; subclasses define ``fields`` and
    ``build(version, fields)`` (which reads every version ever written)."""

    VERSION = 1

    def fields(self, value: Any) -> list[Any]:
        raise NotImplementedError

    def build(self, version: int, fields: list[Any]) -> Any:
        raise NotImplementedError

    def encode(self, value: Any) -> bytes:
        return orjson.dumps([self.VERSION, *self.fields(value)])

    def decode(self, encoded: bytes) -> Any:
        version, *fields = orjson.loads(encoded)
        if not 1 <= version <= self.VERSION:
            raise ValueError(
                f"{type(self).__name__}: layout version {version} is newer than this code "
                f"(reads 1..{self.VERSION}); update with a version that knows it"
            )
        return self.build(version, fields)

    def is_deterministic(self) -> bool:
        return False

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))
