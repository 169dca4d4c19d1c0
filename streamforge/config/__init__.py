"""Typed configuration with one source of values: ``defaults.toml`` in this package.

The dataclasses below declare the shape and the types; the TOML file declares the values.
A user file (``--config`` or ``STREAMFORGE_CONFIG``) overrides any subset of keys. Unknown
keys and values of the wrong type are rejected with the file, key and reason.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
import typing
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from streamforge.timeutil import parse_duration, parse_timestamp
from streamforge.vocabulary import CURRENCIES

__all__ = [
    "Config",
    "ConfigError",
    "FraudRules",
    "PipelineConfig",
    "RevenueConfig",
    "AlertDispatcherConfig",
    "BatchConfig",
    "CdcConfig",
    "IngestConfig",
    "LocalStreamingConfig",
    "SessionConfig",
    "SimulatorConfig",
    "TopicsConfig",
    "embedded_defaults",
    "load_config",
]

CONFIG_ENV_VAR = "STREAMFORGE_CONFIG"


class ConfigError(ValueError):
    """A configuration file or value is invalid; the message names the file and key.

    ``key`` is the offending field's name when a dataclass check raised it.
    """

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class TopicsConfig:
    clickstream: str
    orders: str
    fraud_alerts: str
    dead_letter: str
    undeliverable: str


@dataclass(frozen=True)
class SessionConfig:
    gap: timedelta
    allowed_lateness: timedelta
    early_panes: timedelta

    def __post_init__(self) -> None:
        for name in ("gap", "allowed_lateness", "early_panes"):
            if getattr(self, name) < timedelta(0):
                raise ConfigError(f"sessions.{name} must not be negative", name)


@dataclass(frozen=True)
class RevenueConfig:
    allowed_lateness: timedelta


@dataclass(frozen=True)
class PipelineConfig:
    dedup_ttl: timedelta
    dedup_shards: int
    max_clock_skew: timedelta
    lateness_margin: timedelta
    min_event_time: datetime
    max_event_age: timedelta

    def __post_init__(self) -> None:
        for name in ("dedup_ttl", "max_clock_skew", "lateness_margin", "max_event_age"):
            if getattr(self, name).total_seconds() < 0:
                raise ConfigError(f"pipelines.{name} must not be negative", name)
        if self.dedup_shards < 1:
            raise ConfigError("pipelines.dedup_shards must be at least 1", "dedup_shards")


@dataclass(frozen=True)
class LocalStreamingConfig:
    watermark_lag: timedelta
    idle_input: timedelta
    pull_batch: int

    def __post_init__(self) -> None:
        for name in ("watermark_lag", "idle_input"):
            if getattr(self, name).total_seconds() < 0:
                raise ConfigError(f"local_streaming.{name} must not be negative", name)
        if not 1 <= self.pull_batch <= 1000:
            raise ConfigError("local_streaming.pull_batch must be 1-1000 (Pub/Sub's largest pull)", "pull_batch")


@dataclass(frozen=True)
class FraudRules:
    rapid_orders_count: int
    rapid_orders_window: timedelta
    high_value_first_order: Decimal
    max_travel_speed_kmh: float
    min_travel_distance_km: float
    card_testing_failed_payments: int
    card_testing_distinct_cards: int
    card_testing_window: timedelta

    def __post_init__(self) -> None:
        # Two orders in a row are no pattern (and a LOCATION_ANOMALY pair would match too).
        minimums = {"rapid_orders_count": 3, "card_testing_failed_payments": 2, "card_testing_distinct_cards": 2}
        for name, least in minimums.items():
            if getattr(self, name) < least:
                raise ConfigError(f"fraud.{name} must be at least {least}, got {getattr(self, name)}")
        for name in ("rapid_orders_window", "card_testing_window"):
            if getattr(self, name).total_seconds() <= 0:
                raise ConfigError(f"fraud.{name} must be positive")
        if self.high_value_first_order <= 0:
            raise ConfigError(f"fraud.high_value_first_order must be positive, got {self.high_value_first_order}")
        if self.max_travel_speed_kmh <= 0:
            raise ConfigError(f"fraud.max_travel_speed_kmh must be positive, got {self.max_travel_speed_kmh}")
        if self.min_travel_distance_km < 0:
            raise ConfigError(f"fraud.min_travel_distance_km must not be negative, got {self.min_travel_distance_km}")


@dataclass(frozen=True)
class SimulatorConfig:
    seed: int
    start: str
    duration: timedelta
    sessions_per_second: float
    users: int
    currency: str
    fraud_rate: float
    malformed_fraction: float
    duplicate_fraction: float

    def __post_init__(self) -> None:
        if self.start.strip().lower() != "now":
            try:
                parse_timestamp(self.start)
            except ValueError as exc:
                raise ConfigError(f"simulator.start must be 'now' or an RFC 3339 time: {exc}", "start") from None
        if self.sessions_per_second <= 0:
            raise ConfigError(
                f"simulator.sessions_per_second must be positive, got {self.sessions_per_second}", "sessions_per_second"
            )
        if self.users < 1:
            raise ConfigError(f"simulator.users must be at least 1, got {self.users}", "users")
        if self.currency not in CURRENCIES:  # else every simulated order would be dead-lettered
            raise ConfigError(
                f"simulator.currency must be an ISO 4217 code like USD, got {self.currency!r}", "currency"
            )
        for name in ("fraud_rate", "malformed_fraction", "duplicate_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"simulator.{name} must be between 0 and 1, got {getattr(self, name)}", name)

    def start_time(self) -> datetime | None:
        """The simulated start as an aware datetime; None for 'now' (the wall clock)."""
        return None if self.start.strip().lower() == "now" else parse_timestamp(self.start)


@dataclass(frozen=True)
class CdcConfig:
    replicas: tuple[str, ...]
    low_stock_threshold: int

    def __post_init__(self) -> None:
        if self.low_stock_threshold < 1:
            raise ConfigError(
                f"cdc.low_stock_threshold must be at least 1, got {self.low_stock_threshold}", "low_stock_threshold"
            )
        if not self.replicas or len(set(self.replicas)) != len(self.replicas):
            raise ConfigError(f"cdc.replicas must name distinct tables, got {list(self.replicas)}", "replicas")


@dataclass(frozen=True)
class AlertDispatcherConfig:
    webhook_timeout: timedelta
    ledger_ttl: timedelta

    def __post_init__(self) -> None:
        for name in ("webhook_timeout", "ledger_ttl"):
            if getattr(self, name).total_seconds() <= 0:
                raise ConfigError(f"alert_dispatcher.{name} must be positive", name)


@dataclass(frozen=True)
class IngestConfig:
    max_body_bytes: int
    max_batch_events: int
    api_key_header: str
    allowed_origins: tuple[str, ...]
    publish_timeout: timedelta
    browser_events_per_second: float
    server_events_per_second: float
    burst: timedelta

    def __post_init__(self) -> None:
        for name in ("browser_events_per_second", "server_events_per_second"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"ingest.{name} must be positive, got {getattr(self, name)}", name)
        if self.burst.total_seconds() <= 0:
            raise ConfigError("ingest.burst must be positive", "burst")
        if self.max_body_bytes < 1024:
            raise ConfigError(
                f"ingest.max_body_bytes must be at least 1024, got {self.max_body_bytes}", "max_body_bytes"
            )
        if self.max_batch_events < 1:
            raise ConfigError(
                f"ingest.max_batch_events must be at least 1, got {self.max_batch_events}", "max_batch_events"
            )
        if not self.api_key_header or not self.api_key_header.isascii() or " " in self.api_key_header:
            raise ConfigError(
                f"ingest.api_key_header must be an HTTP header name, got {self.api_key_header!r}", "api_key_header"
            )
        if self.publish_timeout.total_seconds() <= 0:
            raise ConfigError("ingest.publish_timeout must be positive", "publish_timeout")


@dataclass(frozen=True)
class BatchConfig:
    top_regions: int

    def __post_init__(self) -> None:
        if self.top_regions < 1:
            raise ConfigError(f"batch.top_regions must be at least 1, got {self.top_regions}", "top_regions")


@dataclass(frozen=True)
class Config:
    topics: TopicsConfig
    sessions: SessionConfig
    revenue: RevenueConfig
    pipelines: PipelineConfig
    local_streaming: LocalStreamingConfig
    fraud: FraudRules
    simulator: SimulatorConfig
    cdc: CdcConfig
    alert_dispatcher: AlertDispatcherConfig
    ingest: IngestConfig
    batch: BatchConfig


def embedded_defaults() -> Config:
    """The values shipped in defaults.toml, ignoring $STREAMFORGE_CONFIG (for help texts)."""
    return _build(
        Config, _read_toml(resources.files(__package__).joinpath("defaults.toml"), "defaults.toml"), "defaults.toml", ""
    )


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Embedded defaults, overlaid by ``path`` (or $STREAMFORGE_CONFIG when ``path`` is None)."""
    raw = _read_toml(resources.files(__package__).joinpath("defaults.toml"), "defaults.toml")
    source = "defaults.toml"
    if path is None and os.environ.get(CONFIG_ENV_VAR):
        path = os.environ[CONFIG_ENV_VAR]
    if path is not None:
        user = _read_toml(Path(path), str(path))
        _overlay(raw, user, str(path), prefix="")
        source = str(path)
    return _build(Config, raw, source, prefix="")


def _read_toml(file: Any, name: str) -> dict[str, Any]:
    try:
        with file.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{name}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{name}: not valid TOML: {exc}") from None


def _overlay(base: dict[str, Any], user: Mapping[str, Any], source: str, prefix: str) -> None:
    for key, value in user.items():
        where = f"{prefix}{key}"
        if key not in base:
            raise ConfigError(f"{source}: unknown key '{where}'{_suggest(key, base)}")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: '{where}' must be a table ([{where}]), got {value!r}")
            _overlay(base[key], value, source, prefix=f"{where}.")
        else:
            base[key] = value


def _suggest(key: str, known: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"{hint}; known keys: {', '.join(sorted(known))}"


def _build(cls: type, raw: Mapping[str, Any], source: str, prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        where = f"{prefix}{f.name}"
        if f.name not in raw:
            raise ConfigError(f"{source}: missing key '{where}'")
        kwargs[f.name] = _coerce(hints[f.name], raw[f.name], source, where)
    extra = set(raw) - {f.name for f in dataclasses.fields(cls)}
    if extra:
        name = sorted(extra)[0]
        raise ConfigError(f"{source}: unknown key '{prefix}{name}'")
    try:
        return cls(**kwargs)
    except ConfigError as exc:  # a value check in the dataclass: say which file it came from
        raise ConfigError(f"{source}: {exc}", exc.key) from None


def _coerce(kind: Any, value: Any, source: str, where: str) -> Any:
    def bad(expected: str) -> ConfigError:
        return ConfigError(f"{source}: '{where}' must be {expected}, got {value!r}")

    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise bad(f"a table [{where}]")
        return _build(kind, value, source, prefix=f"{where}.")
    if kind is bool:
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if kind == tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad("a list of strings")
        return tuple(value)
    if kind is Decimal:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise bad('a decimal string such as "5000.00" (or an integer)')
        try:
            return Decimal(value)
        except InvalidOperation:
            raise bad("a decimal number") from None
    if kind is timedelta:
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise bad(f"a duration ({exc})") from None
    if kind is datetime:
        try:
            return parse_timestamp(value)
        except ValueError as exc:
            raise bad(f"a timestamp ({exc})") from None
    raise TypeError(f"unsupported config type {kind} for {where}")
