"""The live dashboard (app.py): revenue, sessions, alerts and their delivery, dead letters, pipeline health."""
