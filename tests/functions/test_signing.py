"""Webhook signatures: what the dispatcher signs verifies with an independent HMAC, with the
shipped verifier and with the snippet in docs/functions.md; anything altered does not."""

from __future__ import annotations

import hashlib
import hmac
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamforge.functions.signing import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureError,
    signature_headers,
    verify_signature,
)
from streamforge.packaging import REPO_ROOT

SECRET = "receiver-secret-0123456789"
BODY = b'{"alert_id":"a-1","risk_score":0.85}'
NOW = 1_790_000_000.0


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    headers = signature_headers(SECRET, "a-1", BODY, now=NOW)
    independent = hmac.new(SECRET.encode(), b"1790000000." + BODY, hashlib.sha256).hexdigest()
    assert headers == {IDEMPOTENCY_HEADER: "a-1", TIMESTAMP_HEADER: "1790000000", SIGNATURE_HEADER: f"v1={independent}"}
    assert verify_signature(SECRET, headers, BODY, now=NOW + 10) == 1790000000


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda h, b: (h, b.replace(b"0.85", b"0.05")), "does not match"),
        (lambda h, b: ({**h, TIMESTAMP_HEADER: "1790000001"}, b), "does not match"),
        (lambda h, b: ({**h, SIGNATURE_HEADER: "v1=" + "0" * 64}, b), "does not match"),
        (lambda h, b: ({k: v for k, v in h.items() if k != SIGNATURE_HEADER}, b), f"missing {SIGNATURE_HEADER}"),
        (lambda h, b: ({k: v for k, v in h.items() if k != TIMESTAMP_HEADER}, b), f"missing {TIMESTAMP_HEADER}"),
        (lambda h, b: ({**h, TIMESTAMP_HEADER: "yesterday"}, b), "not Unix seconds"),
        (lambda h, b: ({**h, SIGNATURE_HEADER: "sha256=abc"}, b), "no v1= signature"),
    ],
)
def test_altered_requests_are_refused_with_the_reason(change, reason) -> None:
    headers, body = change(signature_headers(SECRET, "a-1", BODY, now=NOW), BODY)
    with pytest.raises(SignatureError, match=reason):
        verify_signature(SECRET, headers, body, now=NOW)


def test_an_old_or_future_timestamp_is_a_replay() -> None:
    headers = signature_headers(SECRET, "a-1", BODY, now=NOW)
    with pytest.raises(SignatureError, match="301 s old"):
        verify_signature(SECRET, headers, BODY, now=NOW + 301)
    with pytest.raises(SignatureError, match="ahead"):
        verify_signature(SECRET, headers, BODY, now=NOW - 400)
    assert verify_signature(SECRET, headers, BODY, now=NOW + 3000, tolerance=3600)


def test_a_wrong_secret_fails_and_rotation_accepts_either() -> None:
    headers = signature_headers(SECRET, "a-1", BODY, now=NOW)
    with pytest.raises(SignatureError, match="wrong secret"):
        verify_signature("another-secret-0123456789", headers, BODY, now=NOW)
    assert verify_signature(["new-secret-0123456789", SECRET], headers, BODY, now=NOW)
    with pytest.raises(SignatureError, match="no secret"):
        verify_signature([], headers, BODY, now=NOW)


def _docs_snippet() -> dict:
    text = (REPO_ROOT / "docs" / "functions.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    snippet = next(b for b in blocks if b.startswith("# verify_streamforge_signature.py"))
    namespace: dict = {}
    exec(compile(snippet, "docs/functions.md", "exec"), namespace)  # noqa: S102 - our own documentation
    return namespace


def test_the_documented_snippet_verifies_what_the_dispatcher_sends() -> None:
    verify = _docs_snippet()["verify_streamforge_signature"]
    headers = signature_headers(SECRET, "a-1", BODY)  # signed now: the snippet reads the clock
    assert verify(SECRET, headers, BODY) is True
    assert verify(SECRET, headers, BODY + b" ") is False
    assert verify("another-secret-0123456789", headers, BODY) is False
    stale = signature_headers(SECRET, "a-1", BODY, now=NOW)
    assert verify(SECRET, stale, BODY) is False


#: Headers an attacker crafted: each made the old verifier (and the old docs snippet) raise
#: ValueError, OverflowError or TypeError instead of refusing the request.
CRAFTED = [
    {TIMESTAMP_HEADER: "\u00b2", SIGNATURE_HEADER: "v1=00"},  # str.isdigit() is True, int() fails
    {TIMESTAMP_HEADER: "1" + "0" * 400, SIGNATURE_HEADER: "v1=00"},  # int, but no float
    {TIMESTAMP_HEADER: "\u0661\u0667\u0669\u0660", SIGNATURE_HEADER: "v1=00"},  # Arabic-Indic digits
    {TIMESTAMP_HEADER: "1790000000", SIGNATURE_HEADER: "v1=\u00e9" + "0" * 63},  # compare_digest: TypeError
    {TIMESTAMP_HEADER: "1790000000", SIGNATURE_HEADER: "v1=abc,v1=\ud800"},
]


@pytest.mark.parametrize(
    "headers", CRAFTED, ids=["superscript", "400-digits", "arabic-digits", "non-ascii-sig", "surrogate"]
)
def test_crafted_headers_are_refused_with_a_signature_error(headers) -> None:
    with pytest.raises(SignatureError):
        verify_signature(SECRET, headers, BODY, now=NOW)
    assert _docs_snippet()["verify_streamforge_signature"](SECRET, headers, BODY) is False


@settings(max_examples=300, deadline=None)
@given(
    timestamp=st.one_of(st.text(max_size=30), st.integers().map(str)),
    signature=st.text(max_size=80),
    body=st.binary(max_size=64),
)
def test_no_header_value_raises_anything_but_a_signature_error(timestamp, signature, body) -> None:
    headers = {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: signature}
    try:
        verify_signature(SECRET, headers, body, now=NOW)
    except SignatureError:
        pass
    assert _docs_snippet()["verify_streamforge_signature"](SECRET, headers, body) in (True, False)
