"""What the Cloud Functions under ``functions/`` share, packaged with the core so that each
function folder deploys on its own: webhook signing, alert delivery, the delivery ledger,
the ingest endpoint's logic, structured logs, and the packaging of a function for deployment.

Each function's ``main.py`` only wires one of these to functions-framework.
"""
