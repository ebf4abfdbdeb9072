"""The shipped workflow templates are the product page's four, as written there."""

from __future__ import annotations

import yaml

from flowguard.control.workflow_files import load_workflows
from flowguard.control.workflow_templates import TEMPLATE_DIR
from tests.seed import seed_blocks

TEMPLATES = TEMPLATE_DIR


def test_the_four_templates_are_the_pages_own() -> None:
    loaded = load_workflows(TEMPLATES)
    assert sorted(item.workflow.name for item in loaded) == [
        "Alert on payment processing failures",
        "Auto-retry network errors",
        "Escalate after 3 failures",
        "Recover orphaned tasks",
    ]
    page = [yaml.safe_load(b) for b in seed_blocks()]
    for item in loaded:
        assert item.document in page, f"{item.source} differs from the product page"
