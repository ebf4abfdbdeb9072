"""Request and response bodies of the API: what /openapi.json documents.

Definitions travel as the author's mapping (``definition``) or as YAML text
(``yaml``), always with secrets masked on the way out.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from topics.execution import ExecutionRecord


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DefinitionInput(_Body):
    """A workflow as a mapping (``definition``) or as YAML text (``yaml``): give exactly one."""

    definition: dict[str, Any] | None = None
    yaml: str | None = Field(default=None, max_length=1_000_000)

    @model_validator(mode="after")
    def _exactly_one(self) -> DefinitionInput:
        if (self.definition is None) == (self.yaml is None):
            raise ValueError("give exactly one of definition or yaml")
        return self


class ValidateInput(DefinitionInput):
    workflow_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="The saved workflow this draft edits: its masked secrets stand for these.",
    )


class SaveInput(DefinitionInput):
    comment: str = Field(default="", max_length=1000)
    expected_version: int | None = Field(
        default=None, ge=0, description="Refuse the save if the latest version is not this one."
    )


class RollbackInput(_Body):
    version: int = Field(ge=1)


class LintNote(BaseModel):
    field: str
    message: str


class LastExecution(BaseModel):
    execution_id: str
    outcome: str
    at: str


class WorkflowSummary(BaseModel):
    id: str
    name: str
    description: str
    enabled: bool
    version: int
    trigger: str
    saved_at: str
    saved_by: str
    circuit_state: Literal["closed", "open"] | None = None
    last_execution: LastExecution | None = None
    executions_24h: int = 0
    sparkline: list[int] = Field(default_factory=list, description="Executions per hour, 24 h.")


class WorkflowDetail(BaseModel):
    id: str
    name: str
    version: int
    enabled: bool
    definition: dict[str, Any] = Field(description="As the author wrote it, secrets masked.")
    yaml: str
    saved_at: str
    saved_by: str
    comment: str
    warnings: list[LintNote] = []


class SaveResult(BaseModel):
    saved: bool = Field(description="False when the definition meant the same as the latest.")
    workflow: WorkflowDetail


class VersionInfo(BaseModel):
    version: int
    saved_at: str
    saved_by: str
    comment: str
    deleted: bool
    enabled: bool


class DiffResult(BaseModel):
    a: int
    b: int
    diff: str


class ImportInput(_Body):
    yaml: str = Field(max_length=5_000_000)
    comment: str = Field(default="", max_length=1000)


class ImportItem(BaseModel):
    id: str
    status: Literal["created", "updated", "unchanged"]
    version: int


class ValidateResult(BaseModel):
    """Inline validation for the editor: the problems, or the lint warnings."""

    valid: bool
    id: str | None = None
    problems: list[LintNote] = []
    warnings: list[LintNote] = []


class PreviewInput(_Body):
    template: str = Field(max_length=10_000)
    definition: dict[str, Any] | None = None


class PreviewResult(BaseModel):
    text: str | None
    problem: str | None = None
    variables: dict[str, str]


class TemplateInfo(BaseModel):
    slug: str
    name: str
    description: str
    definition: dict[str, Any]
    yaml: str


class Principal(BaseModel):
    name: str
    role: str


class ExecutionPage(BaseModel):
    items: list[ExecutionRecord]
    next_cursor: str | None
