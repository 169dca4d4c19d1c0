"""Which webhooks already have an alert, so that a redelivered alert skips them.

Pub/Sub redelivers a whole message when the function fails; without a ledger, a webhook
that accepted the alert on the first attempt would get it again on every retry. The
dispatcher reads an alert's settled webhooks before delivering and records the new ones
after. Duplicates can still happen (Pub/Sub may deliver one message twice at once, or the
record can fail after a delivery), which is why every request also carries the alert_id as
its Idempotency-Key.

``STREAMFORGE_ALERT_LEDGER`` chooses where the ledger lives:

- ``firestore://COLLECTION`` or ``firestore://DATABASE/COLLECTION``: a Firestore document per
  alert, shared by every instance (production). ``FIRESTORE_EMULATOR_HOST`` is honoured.
- ``memory`` (the default): this instance only, for local runs; on Cloud Functions a retry
  may reach another instance.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from datetime import datetime, timedelta, timezone
from typing import Mapping, Protocol
from urllib.parse import urlsplit

__all__ = [
    "DEFAULT_COLLECTION",
    "EXPIRE_FIELD",
    "LEDGER_ENV",
    "DeliveryLedger",
    "FirestoreLedger",
    "LedgerError",
    "MemoryLedger",
    "open_ledger",
]

LEDGER_ENV = "STREAMFORGE_ALERT_LEDGER"
#: The document field a Firestore TTL policy expires ledger entries on (the infra program sets it).
EXPIRE_FIELD = "expire_at"
#: The collection the deployed dispatcher uses (firestore://DATABASE/alert_deliveries).
DEFAULT_COLLECTION = "alert_deliveries"
_DOCUMENT_ID = re.compile(r"[A-Za-z0-9_.-]{1,100}")


class LedgerError(RuntimeError):
    """The ledger is misconfigured or could not be read or written (the message says which)."""


class DeliveryLedger(Protocol):
    def settled(self, alert_id: str) -> dict[str, str]:
        """Webhook name -> outcome ("delivered", or "rejected: <reason>") recorded for the alert."""

    def record(self, alert_id: str, outcomes: Mapping[str, str]) -> None:
        """Adds settled outcomes for the alert (keeps those recorded earlier)."""

    def describe(self) -> str: ...


class MemoryLedger:
    """A bounded in-process ledger: the most recent ``capacity`` alerts, each for ``ttl``."""

    def __init__(self, ttl: timedelta, capacity: int = 100_000):
        self.ttl, self.capacity = ttl, capacity
        self._entries: OrderedDict[str, tuple[datetime, dict[str, str]]] = OrderedDict()
        self._lock = threading.Lock()

    def settled(self, alert_id: str) -> dict[str, str]:
        with self._lock:
            entry = self._entries.get(alert_id)
            if entry is None or entry[0] < datetime.now(timezone.utc):
                return {}
            return dict(entry[1])

    def record(self, alert_id: str, outcomes: Mapping[str, str]) -> None:
        with self._lock:
            _, known = self._entries.pop(alert_id, (None, {}))
            self._entries[alert_id] = (datetime.now(timezone.utc) + self.ttl, {**known, **outcomes})
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def describe(self) -> str:
        return "memory (this instance only)"


class FirestoreLedger:
    """One document per alert: ``{alert_id, webhooks: {name: {outcome, at}}, expire_at}``.

    ``expire_at`` is meant for a Firestore TTL policy on the collection, so old entries go
    away on their own.
    """

    def __init__(self, collection: str, ttl: timedelta, database: str | None = None, project: str | None = None):
        try:
            from google.cloud import firestore
        except ImportError:
            raise LedgerError(
                "a firestore:// ledger needs google-cloud-firestore: pip install 'streamforge[functions]'"
            ) from None
        from google.auth.exceptions import DefaultCredentialsError

        try:
            client = (
                firestore.Client(project=project, database=database) if database else firestore.Client(project=project)
            )
        except DefaultCredentialsError as exc:
            raise LedgerError(f"Firestore ledger: no usable credentials ({exc})") from None
        self._collection = client.collection(collection)
        self.collection, self.database, self.ttl = collection, database or "(default)", ttl

    def _document(self, alert_id: str):
        # alert_ids are ours and plain, but a document id must not contain '/' or be '.'/'..'
        key = (
            alert_id
            if _DOCUMENT_ID.fullmatch(alert_id) and alert_id not in (".", "..")
            else "sha256-" + hashlib.sha256(alert_id.encode()).hexdigest()
        )
        return self._collection.document(key)

    def settled(self, alert_id: str) -> dict[str, str]:
        from google.api_core import exceptions

        try:
            snapshot = self._document(alert_id).get(timeout=10)
        except exceptions.GoogleAPICallError as exc:
            raise LedgerError(f"Firestore ledger {self.describe()}: read failed: {exc.message}") from None
        if not snapshot.exists:
            return {}
        webhooks = (snapshot.to_dict() or {}).get("webhooks") or {}
        return {name: entry.get("outcome", "delivered") for name, entry in webhooks.items() if isinstance(entry, dict)}

    def record(self, alert_id: str, outcomes: Mapping[str, str]) -> None:
        from google.api_core import exceptions

        now = datetime.now(timezone.utc)
        update = {
            "alert_id": alert_id,
            EXPIRE_FIELD: now + self.ttl,
            "webhooks": {name: {"outcome": outcome, "at": now} for name, outcome in outcomes.items()},
        }
        try:
            self._document(alert_id).set(update, merge=True, timeout=10)
        except exceptions.GoogleAPICallError as exc:
            raise LedgerError(f"Firestore ledger {self.describe()}: write failed: {exc.message}") from None

    def describe(self) -> str:
        return f"firestore database {self.database} collection {self.collection}"


def open_ledger(url: str | None, ttl: timedelta) -> DeliveryLedger:
    """``memory`` (also for None or ""), ``firestore://COLLECTION`` or ``firestore://DATABASE/COLLECTION``."""
    if not url or url == "memory":
        return MemoryLedger(ttl)
    parts = urlsplit(url)
    if parts.scheme == "firestore":
        segments = [s for s in (parts.netloc + parts.path).split("/") if s]
        if len(segments) == 1:
            return FirestoreLedger(segments[0], ttl)
        if len(segments) == 2:
            return FirestoreLedger(segments[1], ttl, database=segments[0])
    raise LedgerError(
        f"{LEDGER_ENV}={url!r}: expected memory, firestore://COLLECTION or firestore://DATABASE/COLLECTION"
    )
