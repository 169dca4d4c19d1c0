"""Pulumi's entry point (``main: infra/`` in Pulumi.yaml)."""

from infra.program import deploy

deploy()
