"""Every command block in README.md runs here, or is marked as needing a vehicle.

A block runs here when each of its commands is a make target (checked with `make -n`), one of
this package's console scripts, or `python -m MODULE` / `python SCRIPT.py`; those are run with
`--help` and every `--flag` the README uses must be in that help, as a whole token (`--fed` is
not found in `--fed-extra-rates`). A block that needs a ROS 2 workspace, a camera or a GPU is
preceded by the marker line `<!-- vehicle-only -->`.

Why: the README is what a new user copies first; a renamed make target or CLI flag there is the
first thing they trip over.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VEHICLE_ONLY = "<!-- vehicle-only -->"
BIN = Path(sys.executable).parent


@dataclass
class Block:
    line: int  # 1-based line of the opening fence
    language: str
    text: str
    vehicle_only: bool


def command_blocks(markdown: str) -> list[Block]:
    """The fenced blocks of a Markdown text with the marker state of each."""
    blocks, lines, i = [], markdown.splitlines(), 0
    while i < len(lines):
        match = re.match(r"^```(\w*)", lines[i])
        if not match:
            i += 1
            continue
        before = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        body = "\n".join(lines[i + 1 : end])
        blocks.append(Block(i + 1, match.group(1), body, before == VEHICLE_ONLY))
        i = end + 1
    return blocks


def commands(block: Block) -> list[list[str]]:
    """Each command of a shell block as words (continuations joined, comments dropped)."""
    joined = block.text.replace("\\\n", " ")
    found = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            found.append(words)
    return found


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][\w-]*):", text, flags=re.M))


def help_command(words: list[str]) -> list[str] | None:
    """The `--help` call for a command this machine can run, None for anything else."""
    name = words[0]
    if (BIN / name).is_file() and name.startswith("fed_"):
        return [str(BIN / name), "--help"]
    if name in ("python", "python3") and len(words) > 2 and words[1] == "-m":
        return [sys.executable, "-m", words[2], "--help"]
    if name in ("python", "python3") and len(words) > 1 and words[1].endswith(".py"):
        return [sys.executable, str(ROOT / words[1]), "--help"]
    return None


def help_flags(help_text: str) -> set[str]:
    """The ``--flags`` a --help text names, as whole tokens (``--fed`` is not named by a help
    that only knows ``--fed-extra-rates``)."""
    return set(re.findall(r"(?<![\w-])--[A-Za-z0-9][\w-]*", help_text))


def unknown_flags(words: list[str], help_text: str) -> list[str]:
    """The ``--flags`` of a command (``--flag=value`` too) its --help does not name."""
    known = help_flags(help_text)
    flags = (w.split("=", 1)[0] for w in words if w.startswith("--"))
    return [flag for flag in flags if flag not in known]


def check_runs_here(words: list[str]) -> None:
    if words[0] == "make":
        targets = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
        assert targets and set(targets) <= make_targets(), f"not make targets: {targets}"
        dry = subprocess.run(
            ["make", "-n", "-C", str(ROOT), *targets], capture_output=True, text=True, timeout=60
        )
        assert dry.returncode == 0, dry.stderr
        return
    call = help_command(words)
    assert call is not None, (
        f"`{' '.join(words)}` does not run on a fresh clone: make it runnable or mark its block "
        f"with {VEHICLE_ONLY}"
    )
    proc = subprocess.run(call, cwd=str(ROOT), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    for flag in unknown_flags(words, proc.stdout):
        raise AssertionError(f"{words[0]} --help does not know {flag}")


README_BLOCKS = command_blocks((ROOT / "README.md").read_text())


def test_readme_has_the_two_commands_and_a_vehicle_block() -> None:
    runnable = [c for b in README_BLOCKS if not b.vehicle_only for c in commands(b)]
    assert ["make", "demo"] in runnable and ["make", "test"] in runnable
    assert any(b.vehicle_only and commands(b) for b in README_BLOCKS)


@pytest.mark.parametrize(
    "block", [b for b in README_BLOCKS if not b.vehicle_only], ids=lambda b: f"line{b.line}"
)
def test_every_unmarked_readme_block_runs_here(block: Block) -> None:
    assert block.language in ("bash", "sh", "console"), (
        f"README line {block.line}: a command block says its shell (```bash)"
    )
    for words in commands(block):
        check_runs_here(words)


def test_the_checker_refuses_what_a_fresh_clone_cannot_run() -> None:
    """An unmarked vehicle command and an unknown flag are caught (the test can fail)."""
    block = command_blocks("```bash\nros2 launch ros2_fed fed.launch.py\n```\n")[0]
    assert not block.vehicle_only
    with pytest.raises(AssertionError, match="vehicle-only"):
        check_runs_here(commands(block)[0])
    with pytest.raises(AssertionError, match="no-such-target"):
        check_runs_here(["make", "no-such-target"])
    with pytest.raises(AssertionError, match="does not know --no-such-flag"):
        check_runs_here(["fed_export", "--no-such-flag"])
    # a flag that is only the start of a real one (--calibration-data) is not known
    with pytest.raises(AssertionError, match="does not know --calibration$"):
        check_runs_here(["fed_export", "--calibration=DIR"])
    check_runs_here(["fed_export", "--calibration-data", "DIR", "--fed=FED"])


def test_flags_are_matched_as_whole_tokens() -> None:
    help_text = "usage: x [--fed FED] [--fed-extra-rates RATES]\n  --out-dir DIR, -o DIR\n"
    assert help_flags(help_text) == {"--fed", "--fed-extra-rates", "--out-dir"}
    assert unknown_flags(["x", "--fed", "F", "--fed-extra-rates=0.5"], help_text) == []
    assert unknown_flags(["x", "--fed-extra", "--out", "--fe"], help_text) == [
        "--fed-extra",
        "--out",
        "--fe",
    ]
    assert unknown_flags(["x", "--fed"], "  --fed-extra-rates RATES") == ["--fed"]
    marked = command_blocks(f"{VEHICLE_ONLY}\n```bash\nrviz2\n```\n")[0]
    assert marked.vehicle_only


def docs_cli_commands() -> list[tuple[str, list[str]]]:
    """(page, words) of every fed_* command in the docs pages' shell blocks."""
    found = []
    for page in sorted((ROOT / "docs").glob("*.md")):
        for block in command_blocks(page.read_text()):
            if block.language in ("bash", "sh"):
                found += [(page.name, w) for w in commands(block) if w[0].startswith("fed_")]
    return found


@pytest.mark.slow
def test_every_flag_the_docs_pages_give_a_cli_exists() -> None:
    """The docs pages' fed_* examples use only flags their --help lists."""
    helps: dict[str, str] = {}
    wrong = []
    for page, words in docs_cli_commands():
        name = words[0]
        if name not in helps:
            proc = subprocess.run(
                [str(BIN / name), "--help"], capture_output=True, text=True, timeout=300
            )
            assert proc.returncode == 0, f"{name} --help: {proc.stderr}"
            helps[name] = proc.stdout
        wrong += [f"{page}: {name} {flag}" for flag in unknown_flags(words, helps[name])]
    assert len(helps) >= 5 and not wrong, wrong
