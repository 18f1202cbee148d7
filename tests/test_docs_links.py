"""The README's links lead to files inside the repository, and its anchors to headings there.

Why: everything but the first steps moved from the README into docs/ pages; a renamed page or
reworded heading must not leave the README pointing nowhere.
"""

from __future__ import annotations

import re
import unicodedata
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


def heading_anchors(markdown: str) -> set[str]:
    """The ids Python-Markdown's toc extension gives the headings (MkDocs' default slugify)."""
    anchors = set()
    for line in markdown.splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            text = unicodedata.normalize("NFKD", match.group(1)).encode("ascii", "ignore")
            slug = re.sub(r"[^\w\s-]", "", text.decode().replace("`", "")).strip().lower()
            anchors.add(re.sub(r"[-\s]+", "-", slug))
    return anchors


def test_every_readme_link_resolves_inside_the_repository() -> None:
    text = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    local = [link for link in links if "://" not in link]
    assert len(local) >= 10  # the README points at its docs pages
    for link in local:
        path, _, anchor = link.partition("#")
        target = (ROOT / path).resolve()
        assert target.is_relative_to(ROOT) and target.exists(), link
        if anchor:
            assert anchor in heading_anchors(target.read_text()), link


def test_heading_anchors_follow_mkdocs() -> None:
    text = "# Surround cameras: one node, one batched engine\n## The model's `calibration`\n"
    assert heading_anchors(text) == {
        "surround-cameras-one-node-one-batched-engine",
        "the-models-calibration",
    }
