"""Records on ``flowguard.workflows`` (compacted, keyed by workflow id).

Each save publishes a new :class:`WorkflowVersion`; deleting publishes a
tombstone (a null value). ``<prefix>.workflow-history`` carries the same
records and is never compacted: a delete is recorded there as a version with
``deleted: true`` (the definition it removed), so versions, diff and rollback
outlive the tombstone. ``definition`` is the workflow as its author wrote it
(the YAML format of the product page, as a mapping); the engine validates it
with :mod:`flowguard.engine.workflow` when it reads it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from topics.record import Record


class WorkflowVersion(Record):
    kind: Literal["workflow.version"] = "workflow.version"
    version: Literal[1] = 1
    workflow_id: str
    workflow_version: int = Field(ge=1)
    definition: dict[str, Any]
    saved_at: str = Field(description="ISO 8601 UTC.")
    saved_by: str = "cli"
    comment: str = ""
    deleted: bool = Field(
        default=False, description="workflow-history only: this version deleted the workflow."
    )
