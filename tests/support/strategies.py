"""Hypothesis strategies for the validation property tests: arbitrary JSON values, and the
samples with fields deleted or replaced by them."""

from __future__ import annotations

import copy
from typing import Any

import orjson
from hypothesis import strategies as st

from tests.support.samples import SAMPLES

SUBJECTS = sorted(SAMPLES)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.sampled_from(["", "2026-11-01T08:00:00Z", "page_view", "CREATED", "1.5", "-0"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON document a mutation can hit."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, prefix + (key,))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, prefix + (index,))
    return found


@st.composite
def mutated_events(
    draw: st.DrawFn, json_form: bool = False, values: st.SearchStrategy = json_values, least: int = 1
) -> tuple[str, Any]:
    """A sample record with ``least``..3 mutations: fields deleted or replaced by ``values``
    (in its JSON form with ``json_form``, as decoding JSON gives it)."""
    subject = draw(st.sampled_from(SUBJECTS))
    record = orjson.loads(orjson.dumps(SAMPLES[subject])) if json_form else copy.deepcopy(SAMPLES[subject])
    for _ in range(draw(st.integers(least, 3))):
        paths = _paths(record)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = record
        for step in path[:-1]:
            parent = parent[step]
        if isinstance(parent, dict) and draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(values)
    return subject, record
