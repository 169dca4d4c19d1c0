"""Webhook declarations: precise errors for bad ones, filters, and the Slack message."""

from __future__ import annotations

import json

import pytest

from streamforge.functions.webhooks import WebhookConfigError, parse_webhooks, slack_message
from streamforge.schemas import get_schema
from tests.support.samples import sample

SECRET = "a-signing-secret-0123456789"


def parse(entries, **env):
    return parse_webhooks({"STREAMFORGE_WEBHOOKS": json.dumps(entries), "HOOK_SECRET": SECRET, **env})


def test_a_full_declaration() -> None:
    risk, slack = parse(
        [
            {
                "name": "risk",
                "url": "https://risk.example.com/hooks",
                "secret_env": "HOOK_SECRET",
                "alert_types": ["CARD_TESTING"],
                "min_risk_score": 0.7,
            },
            {"name": "slack", "format": "slack", "url_env": "SLACK_URL"},
        ],
        SLACK_URL="https://hooks.example.com/services/T0/B0/xyz",
    )
    assert (risk.format, risk.secret, risk.alert_types, risk.min_risk_score) == ("json", SECRET, {"CARD_TESTING"}, 0.7)
    assert (slack.format, slack.secret, slack.url) == ("slack", None, "https://hooks.example.com/services/T0/B0/xyz")
    assert "xyz" not in repr(slack) and SECRET not in repr(risk)  # secrets stay out of reprs (and so of logs)


@pytest.mark.parametrize(
    "entries, env, message",
    [
        ("not json", {}, "not valid JSON"),
        ([], {}, "non-empty JSON list"),
        ([5], {}, r"\[0\]: expected an object"),
        ([{"name": "Bad Name", "url": "https://x.example.com"}], {}, "'name' must be"),
        (
            [{"name": "a", "url": "https://x.example.com", "secret_env": "HOOK_SECRET", "alert_type": ["X"]}],
            {},
            "unknown key 'alert_type' \\(did you mean 'alert_types'\\?\\)",
        ),
        ([{"name": "a", "url": "https://x.example.com"}], {}, "needs 'secret_env'"),
        ([{"name": "a", "url": "https://x.example.com", "secret_env": "MISSING"}], {}, r"\$MISSING .* not set"),
        ([{"name": "a", "url": "https://x.example.com", "secret_env": "SHORT"}], {"SHORT": "abc"}, "shorter than 16"),
        (
            [{"name": "a", "url": "http://x.example.com", "secret_env": "HOOK_SECRET"}],
            {},
            "only for a receiver on 127.0.0.1",
        ),
        (
            [{"name": "a", "url": "https://x.example.com", "url_env": "U", "secret_env": "HOOK_SECRET"}],
            {},
            "exactly one",
        ),
        (
            [{"name": "a", "format": "slack", "url": "https://x.example.com", "secret_env": "HOOK_SECRET"}],
            {},
            "not signed",
        ),
        ([{"name": "a", "format": "xml", "url": "https://x.example.com"}], {}, "'format' must be one of json, slack"),
        (
            [{"name": "a", "url": "https://x.example.com", "secret_env": "HOOK_SECRET", "alert_types": ["FRAUD"]}],
            {},
            "'alert_types' must be",
        ),
        (
            [{"name": "a", "url": "https://x.example.com", "secret_env": "HOOK_SECRET", "min_risk_score": 2}],
            {},
            "from 0 to 1",
        ),
        (
            [
                {"name": "a", "url": "https://x.example.com", "secret_env": "HOOK_SECRET"},
                {"name": "a", "url": "https://y.example.com", "secret_env": "HOOK_SECRET"},
            ],
            {},
            "used twice",
        ),
    ],
)
def test_bad_declarations_say_where_and_why(entries, env, message) -> None:
    text = entries if isinstance(entries, str) else json.dumps(entries)
    with pytest.raises(WebhookConfigError, match=message):
        parse_webhooks({"STREAMFORGE_WEBHOOKS": text, "HOOK_SECRET": SECRET, **env})


def test_an_unset_variable_is_reported() -> None:
    with pytest.raises(WebhookConfigError, match="STREAMFORGE_WEBHOOKS is not set"):
        parse_webhooks({})


def test_a_token_in_a_bad_url_is_not_repeated() -> None:
    with pytest.raises(WebhookConfigError) as caught:
        parse([{"name": "s", "format": "slack", "url_env": "U"}], U="ftp://hooks.example.com/services/SECRET-TOKEN")
    assert "SECRET-TOKEN" not in str(caught.value) and "'ftp'" in str(caught.value)


def test_filters_by_type_and_minimum_score() -> None:
    (hook,) = parse(
        [
            {
                "name": "a",
                "url": "https://x.example.com",
                "secret_env": "HOOK_SECRET",
                "alert_types": ["CARD_TESTING", "RAPID_ORDERS"],
                "min_risk_score": 0.8,
            }
        ]
    )
    assert hook.matches({"alert_type": "RAPID_ORDERS", "risk_score": 0.8})
    assert not hook.matches({"alert_type": "RAPID_ORDERS", "risk_score": 0.79})
    assert not hook.matches({"alert_type": "LOCATION_ANOMALY", "risk_score": 0.99})
    (everything,) = parse([{"name": "b", "url": "https://x.example.com", "secret_env": "HOOK_SECRET"}])
    assert everything.matches({"alert_type": "LOCATION_ANOMALY", "risk_score": 0.0})


def test_the_slack_message_reads_well_and_escapes_markup() -> None:
    alert = get_schema("fraud_alert").validate(
        sample("fraud_alert", description="card <b>&</b> 3 failures", order_id=None)
    )
    message = slack_message(alert)
    assert message["text"] == (
        "Fraud alert: RAPID_ORDERS (risk 0.85): user U00000001, order none. card &lt;b&gt;&amp;&lt;/b&gt; 3 failures"
    )
    header, facts, description, context = message["blocks"]
    assert header["text"]["text"] == "Fraud alert: RAPID_ORDERS (risk 0.85)"
    assert [f["text"] for f in facts["fields"]] == [
        "*Type*\nRAPID_ORDERS",
        "*Risk score*\n0.85",
        "*User*\nU00000001",
        "*Order*\nnone",
    ]
    assert description["text"]["text"] == "card &lt;b&gt;&amp;&lt;/b&gt; 3 failures"
    assert (
        "alert a-1" in context["elements"][0]["text"] and "2026-11-01T08:05:00.000Z" in context["elements"][0]["text"]
    )
