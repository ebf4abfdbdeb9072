"""docs/worker.md lists every setting of ``flowguard worker`` with its variable and default."""

from __future__ import annotations

import re
from pathlib import Path

from flowguard.live.settings import LiveSettings

DOC = Path(__file__).resolve().parents[3] / "docs" / "worker.md"


def test_every_worker_setting_is_documented_with_its_variable_and_default() -> None:
    rows = {
        cells[0]: cells
        for line in DOC.read_text().splitlines()
        if line.startswith("| ")
        and len(cells := [c.strip() for c in line.strip("|").split("|")]) == 4
    }
    for name, field in LiveSettings.model_fields.items():
        assert name in rows, f"docs/worker.md has no row for {name}"
        _, variable, default, _ = rows[name]
        assert variable == f"`FLOWGUARD_{name.upper()}`", name
        shown = re.sub(r"[`,]", "", default)
        value = field.default
        expected = str(value) if not isinstance(value, float) else f"{value:g}"
        assert shown == expected, f"{name}: docs say {default}, the default is {value}"


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]
