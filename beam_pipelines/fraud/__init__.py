"""Fraud detection: per-user rules over order events."""
