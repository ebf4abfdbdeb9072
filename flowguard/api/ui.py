"""The web UI: static pages and assets shipped in the wheel, no build step.

Pages are plain HTML; small scripts call the JSON API with the token the user
pasted (kept in ``sessionStorage``, sent in the ``Authorization`` header). The
pages hold no data themselves, so they need no token to be fetched.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from flowguard.api.errors import not_found

UI = files("flowguard") / "ui"
router = APIRouter(include_in_schema=False)

# URL path -> page file. {param} parts are read by the page's script from the URL.
_PAGES = {
    "": "workflows.html",
    "new": "editor.html",
    "login": "login.html",
    "fleet": "fleet.html",
    "groups": "groups.html",
    "remediate": "remediate.html",
}


def _page(name: str) -> FileResponse:
    return FileResponse(str(UI / "pages" / name), media_type="text/html")


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/ui/")


@router.get("/ui/")
async def workflows_page() -> FileResponse:
    return _page("workflows.html")


@router.get("/ui/{page}")
async def named_page(page: str) -> FileResponse:
    if page not in _PAGES:
        raise not_found(f"no page {page!r}")
    return _page(_PAGES[page])


@router.get("/ui/workflows/{workflow_id}")
async def workflow_page(workflow_id: str) -> FileResponse:
    return _page("workflow.html")


@router.get("/ui/workflows/{workflow_id}/edit")
async def edit_page(workflow_id: str) -> FileResponse:
    return _page("editor.html")


@router.get("/ui/tasks/{root_id}")
async def task_page(root_id: str) -> FileResponse:
    return _page("task.html")


static = StaticFiles(directory=str(UI / "static"))
