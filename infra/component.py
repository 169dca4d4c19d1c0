"""What every area of the deployment shares: a ComponentResource whose children are its own."""

from __future__ import annotations

import pulumi

__all__ = ["Area", "member"]


class Area(pulumi.ComponentResource):
    """A ComponentResource of type ``streamforge:infra:<kind>``; ``self.child`` parents a resource to it."""

    def __init__(self, kind: str, name: str, opts: pulumi.ResourceOptions | None = None):
        super().__init__(f"streamforge:infra:{kind}", name, None, opts)
        self.child = pulumi.ResourceOptions(parent=self)

    def after(self, *resources: pulumi.Resource) -> pulumi.ResourceOptions:
        """``self.child`` that also waits for ``resources``."""
        return pulumi.ResourceOptions(parent=self, depends_on=list(resources))


def member(email: pulumi.Input[str]) -> pulumi.Output[str]:
    """The IAM member of a service account email."""
    return pulumi.Output.from_input(email).apply(lambda e: f"serviceAccount:{e}")
