"""The product page's YAML examples, read from the page itself."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
SEED_PAGE = REPO / "docs" / "product" / "workflow-automation.md"
SHARED_SEED_PAGE = REPO.parent / "shared" / "seed" / "workflow-automation.md"

_BLOCK = re.compile(r"```yaml\n(.*?)```", re.DOTALL)


def seed_blocks() -> list[str]:
    """Every ```yaml block of the product page, in page order."""
    return _BLOCK.findall(SEED_PAGE.read_text(encoding="utf-8"))


def seed_documents() -> list[Any]:
    return [yaml.safe_load(block) for block in seed_blocks()]
