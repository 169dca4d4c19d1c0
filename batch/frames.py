"""The Spark form of the output tables declared in ``tables.py``."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from streamforge.schemas.daily_tables import TABLES

__all__ = ["MONEY", "conform", "spark_schema"]

MONEY = T.DecimalType(18, 2)
_SPARK = {
    "string": T.StringType(),
    "long": T.LongType(),
    "double": T.DoubleType(),
    "date": T.DateType(),
    "money": MONEY,
}


def spark_schema(table: str) -> T.StructType:
    """The table's columns as a StructType (every column nullable)."""
    return T.StructType([T.StructField(name, _SPARK[kind], True) for name, kind, _ in TABLES[table].columns])


def conform(frame: DataFrame, table: str) -> DataFrame:
    """``frame`` with exactly the table's columns, in order, cast to their types."""
    return frame.select(*[F.col(name).cast(_SPARK[kind]).alias(name) for name, kind, _ in TABLES[table].columns])
