"""The web UI: static pages and assets shipped in the wheel, no build step.

Pages are one HTML shell with a title and a script each (the login page is its own); the
scripts call the JSON API with the token the user pasted (kept in ``sessionStorage``, sent in
the ``Authorization`` header). The pages hold no data themselves, so they need no token to be
fetched.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from string import Template

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from flowguard.api.errors import not_found

UI = files("flowguard") / "ui"
router = APIRouter(include_in_schema=False)


@dataclass(frozen=True, slots=True)
class Page:
    """A page: the shell (``pages/shell.html``) with its title and its script, which builds
    everything from the JSON API; ``libraries`` load before ``common.js``."""

    title: str
    script: str
    libraries: tuple[str, ...] = ()

    def html(self, shell: Template) -> str:
        tags = [
            *(f'<script src="/ui/static/{name}"></script>' for name in self.libraries),
            '<script src="/ui/static/common.js"></script>',
            f'<script src="/ui/static/{self.script}" defer></script>',
        ]
        return shell.substitute(title=self.title, scripts="\n".join(tags))


# URL path (under /ui/) -> page. {param} parts are read by the page's script from the URL.
_EDITOR = Page("Edit workflow", "editor.js", libraries=("js-yaml.min.js",))
_PAGES = {
    "": Page("Workflows", "workflows.js"),
    "new": _EDITOR,
    "fleet": Page("Fleet", "fleet.js"),
    "groups": Page("Failure groups", "groups.js"),
    "remediate": Page("Bulk remediation", "remediate.js"),
}
_WORKFLOW = Page("Workflow", "workflow.js")
_TASK = Page("Task", "task.js")
_SHELL = Template((UI / "pages" / "shell.html").read_text(encoding="utf-8"))


def _page(page: Page) -> HTMLResponse:
    return HTMLResponse(page.html(_SHELL))


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/ui/")


@router.get("/ui/")
async def workflows_page() -> HTMLResponse:
    return _page(_PAGES[""])


@router.get("/ui/login")
async def login_page() -> FileResponse:
    return FileResponse(str(UI / "pages" / "login.html"), media_type="text/html")


@router.get("/ui/{page}")
async def named_page(page: str) -> HTMLResponse:
    if page not in _PAGES:
        raise not_found(f"no page {page!r}")
    return _page(_PAGES[page])


@router.get("/ui/workflows/{workflow_id}")
async def workflow_page(workflow_id: str) -> HTMLResponse:
    return _page(_WORKFLOW)


@router.get("/ui/workflows/{workflow_id}/edit")
async def edit_page(workflow_id: str) -> HTMLResponse:
    return _page(_EDITOR)


@router.get("/ui/tasks/{root_id}")
async def task_page(root_id: str) -> HTMLResponse:
    return _page(_TASK)


static = StaticFiles(directory=str(UI / "static"))
