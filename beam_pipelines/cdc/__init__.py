"""The CDC job: Debezium change events -> changelogs, replicas and business events (docs/cdc.md)."""
