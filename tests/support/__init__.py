"""Helpers shared by the tests: local servers and independent reference computations."""
