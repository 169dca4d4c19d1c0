"""Firestore: the alert dispatcher's delivery ledger, and the TTL policy that empties it."""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from infra.component import Area
from infra.settings import Settings
from streamforge.functions.ledger import DEFAULT_COLLECTION, EXPIRE_FIELD

__all__ = ["AlertLedger"]


class AlertLedger(Area):
    def __init__(self, settings: Settings, opts: pulumi.ResourceOptions | None = None):
        super().__init__("AlertLedger", "alert-ledger", opts)
        # a database of its own: the project's (default) database may belong to someone else
        self.database = gcp.firestore.Database(
            "ledger",
            project=settings.project,
            name=settings.ledger_database,
            location_id=settings.region,
            type="FIRESTORE_NATIVE",
            delete_protection_state="DELETE_PROTECTION_DISABLED",
            # the provider's default, ABANDON, leaves the database behind on `pulumi destroy`, and
            # the next `pulumi up` then fails on its name (409): it holds delivery records only
            deletion_policy="DELETE",
            opts=self.child,
        )
        self.collection = DEFAULT_COLLECTION
        self.ttl = gcp.firestore.Field(
            "ledger-ttl",
            project=settings.project,
            database=self.database.name,
            collection=self.collection,
            field=EXPIRE_FIELD,
            ttl_config={},
            index_config={},
            opts=self.child,
        )  # no single-field index: never queried
        self.url = f"firestore://{settings.ledger_database}/{self.collection}"
        self.register_outputs({"ledger": self.url})
