"""The documentation site builds with `mkdocs build --strict`: no broken link or anchor, no page
missing from the navigation, no missing included file.

Why: the docs moved out of the README into docs/ pages; a page renamed or a heading reworded
breaks links silently unless the build refuses it. The negative cases prove the strict settings
in mkdocs.yml are really on.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PAGES = (
    "index",
    "vehicle",
    "parameters",
    "alerts-guide",
    "alerts",
    "model",
    "replay",
    "performance",
    "demo",
    "troubleshooting",
    "architecture",
    "fed-method",
    "fed_ablation",
)


def build(config: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        cwd=str(ROOT),  # snippets are included relative to the repository root
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


def test_site_builds_strict_with_every_page(tmp_path) -> None:
    proc = build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert proc.returncode == 0, proc.stderr
    for page in PAGES:
        target = "index.html" if page == "index" else f"{page}/index.html"
        assert (tmp_path / "site" / target).is_file(), page
    # included as they are: the parameter file and the FED results table
    assert "alerts:" in (tmp_path / "site" / "parameters" / "index.html").read_text()
    performance = (tmp_path / "site" / "performance" / "index.html").read_text()
    assert "synthroad-ood" in performance and "models/synthroad_ood_figures.png" in performance
    assert (tmp_path / "site" / "models" / "synthroad_ood_figures.png").is_file()


def copy_of_the_site(tmp_path: Path) -> tuple[Path, Path]:
    """docs/ and mkdocs.yml copied into tmp_path (hooks still from the repository)."""
    docs = tmp_path / "docs"
    shutil.copytree(ROOT / "docs", docs)
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    config["docs_dir"] = str(docs)
    config["hooks"] = [str(ROOT / hook) for hook in config.get("hooks", [])]
    path = tmp_path / "mkdocs.yml"
    path.write_text(yaml.safe_dump(config))
    return docs, path


@pytest.mark.parametrize(
    "damage, message",
    [
        (("troubleshooting.md", "\n[gone](no-such-page.md)\n"), "no-such-page.md"),
        (("troubleshooting.md", "\n[gone](vehicle.md#no-such-heading)\n"), "no-such-heading"),
        (("not-in-nav.md", "# A page nobody can reach\n"), "not-in-nav.md"),
    ],
)
def test_strict_build_refuses_broken_links_and_pages_left_out(tmp_path, damage, message) -> None:
    docs, config = copy_of_the_site(tmp_path)
    name, text = damage
    with (docs / name).open("a") as page:
        page.write(text)
    proc = build(config, tmp_path / "site")
    assert proc.returncode != 0
    assert message in proc.stderr
