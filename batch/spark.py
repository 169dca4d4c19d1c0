"""The SparkSession: local Spark bound to 127.0.0.1, or the one Dataproc Serverless provides."""

from __future__ import annotations

import os

from pyspark.sql import SparkSession

__all__ = ["LOCAL_SETTINGS", "local_session", "session"]

LOOPBACK = "127.0.0.1"
#: Local runs: every socket on loopback, no web UI (it would listen on all interfaces), UTC.
LOCAL_SETTINGS = {
    "spark.driver.bindAddress": LOOPBACK,
    "spark.driver.host": LOOPBACK,
    "spark.ui.enabled": "false",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.shuffle.partitions": "8",
    "spark.sql.sources.partitionOverwriteMode": "dynamic",
    "spark.driver.memory": "4g",
    "spark.sql.adaptive.enabled": "true",
    "spark.log.level": "WARN",
}


def local_session(app: str = "streamforge-daily", cores: str = "*") -> SparkSession:
    """local[cores] on this machine: the driver and its block manager listen on 127.0.0.1 only."""
    os.environ.setdefault("SPARK_LOCAL_IP", LOOPBACK)
    builder = SparkSession.builder.master(f"local[{cores}]").appName(app)
    for key, value in LOCAL_SETTINGS.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def session(app: str = "streamforge-daily") -> SparkSession:
    """Dataproc (or spark-submit) has configured a session already: take it, in UTC; else local."""
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    if os.environ.get("SPARK_ENV_LOADED") or os.environ.get("DATAPROC_IMAGE_VERSION"):
        spark = SparkSession.builder.appName(app).getOrCreate()
        spark.conf.set("spark.sql.session.timeZone", "UTC")
        spark.conf.set("spark.sql.sources.partitionOverwriteMode", "dynamic")
        return spark
    return local_session(app)
