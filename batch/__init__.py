"""The daily batch: PySpark jobs over the events the pipelines keep, on Dataproc Serverless or
local Spark.

``daily_metrics.py`` is the job (the file ``gcloud dataproc batches submit pyspark`` runs);
the modules beside it hold the reading, the validation, the metrics and the writing, as
plain functions of DataFrames. They need PySpark and the standard library only (plus the
``streamforge`` config and schema files shipped with them), because Dataproc Serverless
provides PySpark and nothing else of ours.
"""
