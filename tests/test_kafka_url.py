"""The kafka:// URL: its options, its errors, and that secrets stay out of it."""

from __future__ import annotations

import pytest

from streamforge.kafka import PASSWORD_ENV, USERNAME_ENV, KafkaUrlError, parse_kafka_url


def test_options_and_defaults() -> None:
    url = parse_kafka_url("kafka://b1:9092,b2:9093/orders?group=nightly&until=end")
    assert (url.bootstrap, url.topic, url.group, url.start, url.bounded) == (
        "b1:9092,b2:9093",
        "orders",
        "nightly",
        "committed",
        True,
    )
    assert parse_kafka_url("kafka://127.0.0.1:9092/orders").start == "earliest"  # no group: nothing committed
    timed = parse_kafka_url("kafka://h:1/t?start=2026-12-01T00:00:00Z")
    assert timed.start_time.isoformat() == "2026-12-01T00:00:00+00:00"
    assert (
        str(parse_kafka_url("kafka://h:1/t?group=g&until=end&security=sasl_ssl"))
        == "kafka://h:1/t?group=g&until=end&security=sasl_ssl"
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("kafka://h/t", "'h' is not HOST:PORT"),
        ("kafka://h:70000/t", "'h:70000' is not HOST:PORT"),
        ("kafka://h:1/bad topic", "is not a Kafka topic name"),
        ("kafka://h:1/t?start=yesterday", "start='yesterday': expected earliest, latest, committed or an RFC 3339"),
        ("kafka://h:1/t?start=committed", "start=committed needs a consumer group"),
        ("kafka://h:1/t?until=tomorrow", "the only bound is until=end"),
        ("kafka://h:1/t?security=tls", "security='tls': expected one of plaintext, ssl"),
        ("kafka://h:1/t?mechanism=GSSAPI", "mechanism='GSSAPI'"),
        ("kafka://h:1/t?colour=blue", "unknown option 'colour'"),
        ("kafka://h:1/t?group=a&group=b", "option group given twice"),
        ("kafka://h:1/t?registry=ftp://r", "registry='ftp://r'"),
    ],
)
def test_errors_say_which_part_and_why(url: str, message: str) -> None:
    with pytest.raises(KafkaUrlError, match="--input") as caught:
        parse_kafka_url(url)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "url", ["kafka://alice:s3cret@h:1/t", "kafka://h:1/t?password=s3cret", "kafka://h:1/t?sasl.password=s3cret"]
)
def test_credentials_in_the_url_are_refused_without_echoing_them(url: str) -> None:
    with pytest.raises(KafkaUrlError) as caught:
        parse_kafka_url(url)
    assert "s3cret" not in str(caught.value) and PASSWORD_ENV in str(caught.value)


def test_sasl_credentials_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    url = parse_kafka_url("kafka://h:1/t?security=sasl_ssl&mechanism=scram-sha-512&ca=/etc/ca.pem")
    monkeypatch.delenv(USERNAME_ENV, raising=False)
    with pytest.raises(KafkaUrlError, match=f"needs {USERNAME_ENV} and {PASSWORD_ENV}"):
        url.client_settings()
    monkeypatch.setenv(USERNAME_ENV, "svc")
    monkeypatch.setenv(PASSWORD_ENV, "s3cret")
    settings = url.client_settings()
    assert settings == {
        "bootstrap.servers": "h:1",
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": "/etc/ca.pem",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "svc",
        "sasl.password": "s3cret",
    }
    assert "s3cret" not in str(url) and "s3cret" not in repr(url)
