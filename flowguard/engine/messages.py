"""Message templates: ``{variable}`` substitution over a fixed set of names, nothing else.

Templates come from workflow authors and render task data (args, error
messages) that came from anywhere. So a template is parsed once, when the
workflow is loaded, and refused unless every field is a bare known variable:
no attribute or index access, no conversions, no format specs (they could
reach into objects, and the UI could not preview them). Rendering joins the
parsed literal parts with the values; it never calls ``str.format``, so a value
that looks like a template is printed as it is, never expanded.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass

from flowguard.errors import TemplateInvalid

VARIABLES: frozenset[str] = frozenset(
    {
        "task_name",
        "worker",
        "error_message",
        "task_args",
        "timestamp",
        "workflow_name",
        "task_id",
        "task_kwargs",
        "queue",
        "cluster",
        "exception_type",
        "failure_count",
        "attempt",
        "execution_id",
    }
)
_ALLOWED = ", ".join(sorted(VARIABLES))


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed template: ``parts`` pairs literal text with the variable that follows it.

    The last pair's variable is ``None`` when the template ends in literal text.
    Build one with :func:`compile_template`, which checks every variable.
    """

    source: str
    parts: tuple[tuple[str, str | None], ...]

    @property
    def variables(self) -> frozenset[str]:
        """The variables this template uses, so callers can tell what it needs."""
        return frozenset(name for _, name in self.parts if name is not None)

    def render(self, values: Mapping[str, str]) -> str:
        """Substitute ``values``; rendering is total.

        A variable without a value renders as the empty string: a notification
        about a task with no known queue is still worth sending.
        """
        return "".join(
            literal + (values.get(name, "") if name is not None else "")
            for literal, name in self.parts
        )


def compile_template(text: str) -> Template:
    """Parse and check a template once, so rendering can never fail.

    ``{{`` and ``}}`` stand for literal braces. Anything but a bare known
    variable raises :class:`TemplateInvalid` naming the field and the reason.
    """
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise TemplateInvalid(
            f"not a valid template: {exc} (write {{{{ and }}}} for literal braces)"
        ) from None
    parts: list[tuple[str, str | None]] = []
    for literal, name, spec, conversion in parsed:
        if name is not None:
            _check_field(name, spec, conversion)
        parts.append((literal, name))
    return Template(text, tuple(parts))


def _check_field(name: str, spec: str | None, conversion: str | None) -> None:
    if name == "" or name.isdigit():
        raise TemplateInvalid(
            f"{{{name}}}: positional fields are not allowed; use a name: {_ALLOWED}"
        )
    if "." in name or "[" in name:
        raise TemplateInvalid(
            f"{{{name}}}: attribute and index access are not allowed; use a bare variable: "
            f"{_ALLOWED}"
        )
    if name not in VARIABLES:
        hint = " (no spaces inside the braces)" if name.strip() in VARIABLES else ""
        raise TemplateInvalid(f"unknown variable {{{name}}}{hint}; allowed: {_ALLOWED}")
    if conversion:
        raise TemplateInvalid(f"{{{name}!{conversion}}}: conversions are not allowed")
    if spec:
        raise TemplateInvalid(f"{{{name}:{spec}}}: format specs are not allowed")
