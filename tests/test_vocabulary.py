"""The vocabulary is the one list each: what the simulator draws from is what validation accepts."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamforge.config import load_config
from streamforge.schemas import InvalidEvent, get_schema
from streamforge.simulator.catalog import CATEGORIES as CATALOG
from streamforge.simulator.profile import TrafficProfile
from streamforge.vocabulary import CATEGORIES, CURRENCIES, REGION_CODES, hidden_character
from tests.support.samples import sample


def test_the_simulator_draws_only_from_the_vocabulary() -> None:
    assert [category.name for category in CATALOG] == list(CATEGORIES)
    assert set(TrafficProfile().regions) <= REGION_CODES
    assert load_config().simulator.currency in CURRENCIES


@pytest.mark.parametrize(
    "text, found",
    [
        ("us-east", None),
        ("café Zürich 東京", None),
        ("a b", None),
        ("\u202eus-east", "U+202E RIGHT-TO-LEFT OVERRIDE"),
        ("x\x00", "U+0000 NUL"),
        ("a\tb", "U+0009 (a control character)"),
        ("x\x7f", "U+007F (a control character)"),
        ("x\u0085", "U+0085 (a control character)"),
        ("U\u200b1", "U+200B ZERO WIDTH SPACE"),
        ("\ufeffid", "U+FEFF ZERO WIDTH NO-BREAK SPACE"),
        ("a\u2066b", "U+2066 LEFT-TO-RIGHT ISOLATE"),
        ("a\u2028b", "U+2028 LINE SEPARATOR"),
    ],
)
def test_hidden_characters_are_named(text, found) -> None:
    assert hidden_character(text) == found


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=20),
    encode=st.sampled_from(
        [lambda r: json.dumps(r).encode(), lambda r: json.dumps(r, ensure_ascii=False).encode(), orjson.dumps]
    ),
)
def test_the_json_shortcut_never_changes_the_verdict(text, encode) -> None:
    """from_json skips the hidden-character rule for escape-free ASCII JSON: same verdict as validate()."""
    record = sample("clickstream_event", user_id=text)
    schema = get_schema("clickstream_event")

    def verdict(check) -> str | None:
        try:
            check()
        except InvalidEvent as exc:
            return str(exc)
        return None

    assert verdict(lambda: schema.from_json(encode(record))) == verdict(lambda: schema.validate(record))
