"""The README's pointers to the design docs lead to files inside the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_design_docs_line_points_inside_the_repository() -> None:
    lines = [
        line
        for line in (ROOT / "README.md").read_text().splitlines()
        if line.startswith("Design and conventions")
    ]
    assert len(lines) == 1
    targets = re.findall(r"\(([^)]+\.md)\)|`([^`]+\.md)`", lines[0])
    paths = [a or b for a, b in targets]
    assert {Path(p).name for p in paths} == {"architecture.md", "fed-method.md"}
    for target in paths:
        resolved = (ROOT / target).resolve()
        assert resolved.is_relative_to(ROOT) and resolved.is_file(), target
