"""Names that what runs and what deploys must agree on: defined here, once.

The CLI launches a Dataflow job under the same stable name the infrastructure program gives
it (so ``streamforge dataflow watch analytics`` and ``--update`` find it), and the functions
are deployed under the names the docs and ``functions package`` print.
"""

from __future__ import annotations

import re

__all__ = ["BIGQUERY_DATASET", "DATASET", "JOB_LABEL", "PREFIX", "PROJECT_ID", "dataflow_job_name", "function_name"]

#: Google Cloud's rule for a project id: 6-30 of a-z 0-9 -, a letter first, no - last.
PROJECT_ID = re.compile(r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$")

#: A BigQuery warehouse: ``bigquery://PROJECT.DATASET`` (also the Flex Templates' parameter regex).
BIGQUERY_DATASET = re.compile(r"^bigquery://([a-z][-a-z0-9:.]{4,62}[a-z0-9])\.([A-Za-z_][A-Za-z0-9_]{0,1023})$")

#: The BigQuery dataset the deployment writes (unless its stack names another).
DATASET = "streamforge"

#: What every resource name starts with.
PREFIX = "streamforge"
#: The label on every Dataflow job: its value is the job (sessions, revenue, fraud, all, cdc).
JOB_LABEL = "streamforge-job"


def dataflow_job_name(job: str) -> str:
    """The job's stable Dataflow name: ``--update`` replaces the running job of this name."""
    return f"{PREFIX}-{job}"


def consumer_group(job: str) -> str:
    """The Kafka consumer group a streaming job reads with unless its input names one."""
    return f"{PREFIX}-{job}"


def function_name(function: str) -> str:
    """A Cloud Function's deployed name: ``alert_dispatcher`` -> ``streamforge-alert-dispatcher``."""
    return f"{PREFIX}-{function.replace('_', '-')}"
