"""The SparkSession: local Spark bound to 127.0.0.1, or the one Dataproc Serverless provides."""

from __future__ import annotations

import os

from pyspark.sql import SparkSession

__all__ = ["LOCAL_SETTINGS", "SQL_SETTINGS", "local_session", "session"]

LOOPBACK = "127.0.0.1"
#: Local runs: every socket on loopback, no web UI (it would listen on all interfaces), UTC.
LOCAL_SETTINGS = {
    "spark.driver.bindAddress": LOOPBACK,
    "spark.driver.host": LOOPBACK,
    "spark.ui.enabled": "false",
    "spark.sql.shuffle.partitions": "8",
    "spark.driver.memory": "4g",
    "spark.sql.adaptive.enabled": "true",
    # The kept orders and sessions stay uncompressed in memory: choosing each column's encoding
    # hashes every value of every batch, which cost more CPU than the smaller cache saved
    # (executor CPU 37 s -> 32 s on the benchmark's day, 2,000,000 kept order events).
    "spark.sql.inMemoryColumnarStorage.compressed": "false",
    "spark.log.level": "WARN",
    "spark.ui.showConsoleProgress": "false",
}
#: Both local and on Dataproc. The validation's expressions make generated methods larger than
#: the 8,000 bytes of bytecode HotSpot compiles; above this limit Spark generates smaller code
#: instead (2.5x faster on the order checks here: docs/batch.md).
SQL_SETTINGS = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.sources.partitionOverwriteMode": "dynamic",
    "spark.sql.codegen.hugeMethodLimit": "8000",
    # collect_list (the strict funnel) aggregates by hash only up to this many sessions per task
    # before sorting everything; sessions are small, a task's share of a day fits in memory.
    "spark.sql.objectHashAggregate.sortBased.fallbackThreshold": "10000000",
}


def local_session(app: str = "streamforge-daily", cores: str = "*", java_options: str | None = None) -> SparkSession:
    """local[cores] on this machine: the driver and its block manager listen on 127.0.0.1 only;
    the driver's JVM starts with ``java_options``, by default batch.local_jvm's."""
    from batch.local_jvm import java_options as tuned

    os.environ.setdefault("SPARK_LOCAL_IP", LOOPBACK)
    builder = SparkSession.builder.master(f"local[{cores}]").appName(app)
    settings = {
        **LOCAL_SETTINGS,
        **SQL_SETTINGS,
        "spark.driver.extraJavaOptions": tuned() if java_options is None else java_options,
    }
    for key, value in settings.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def session(app: str = "streamforge-daily") -> SparkSession:
    """Dataproc (or spark-submit) has configured a session already: take it, in UTC; else local."""
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    if os.environ.get("SPARK_ENV_LOADED") or os.environ.get("DATAPROC_IMAGE_VERSION"):
        spark = SparkSession.builder.appName(app).getOrCreate()
        for key, value in SQL_SETTINGS.items():
            spark.conf.set(key, value)
        return spark
    return local_session(app)
