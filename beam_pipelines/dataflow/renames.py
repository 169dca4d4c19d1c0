"""Steps renamed since the jobs' graphs became deployable: the ``--transform_name_mapping``
that ``--update`` needs to carry a running job's state over to the renamed step.

Step labels are part of a running streaming job's identity: Dataflow matches the new job's
steps to the old one's by full name. Labels therefore never carry configuration values
(those go to display data), and a deliberate rename adds a line here. A step that is new
needs no entry; a stateful step that is removed cannot be updated away (drain instead).
"""

from __future__ import annotations

from beam_pipelines.requests import JobRequest, Request
from streamforge.timeutil import format_duration

__all__ = ["transform_renames"]


def transform_renames(request: Request) -> dict[str, str]:
    """Old full step name -> new one, for the steps of ``request``'s job."""
    renames: dict[str, str] = {}
    if isinstance(request, JobRequest) and request.streaming and request.job in ("sessions", "all"):
        # The session windows' label carried the gap until the labels became config-free.
        gap = format_duration(request.config.sessions.gap)
        renames[f"Sessions/Session windows ({gap} gap)"] = "Sessions/Session windows"
    return renames
