"""The known wrong versions of the code (tests/mutants/catalogue.py) each fail their tests.

The checkout is copied once to a temporary folder; for each mutant its file is edited there
(every original snippet must occur exactly once, or the mutant "no longer applies" and this
test fails until the catalogue follows the code), the named tests run against the copy in a
fresh pytest process (the copy is its working directory and first on PYTHONPATH, so its node
processes run the mutated package too), and each named test must FAIL: an error in a fixture or
at collection does not count as a kill. A control run checks that the unmutated copy passes
the fast named tests, so a kill is the mutation's doing, not the copy's.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.mutants.catalogue import MUTANTS, Mutant

REPO = Path(__file__).resolve().parents[1]
SKIP_DIRS = {".git", ".venv", "runs", "__pycache__", ".pytest_cache", ".ruff_cache", "build"}


def checkout_files() -> list[str]:
    """The checkout's files: tracked and untracked-not-ignored (git), else a walk."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout.decode()
        names = [n for n in out.split("\0") if n]
    except (OSError, subprocess.SubprocessError):
        names = [
            str(p.relative_to(REPO))
            for p in REPO.rglob("*")
            if p.is_file() and not SKIP_DIRS & set(p.relative_to(REPO).parts)
        ]
    return [n for n in names if (REPO / n).is_file()]


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mutants") / "checkout"
    for name in checkout_files():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    return root


def mutated(source: str, mutant: Mutant) -> str:
    for edit in mutant.edits:
        if edit.regex:
            found = len(re.findall(edit.before, source))
            assert found == 1, f"{mutant.name!r} no longer applies: {edit.before!r} x{found}"
            source = re.sub(edit.before, edit.after.replace("\\", "\\\\"), source)
        else:
            found = source.count(edit.before)
            assert found == 1, f"{mutant.name!r} no longer applies: {edit.before!r} x{found}"
            source = source.replace(edit.before, edit.after)
    return source


def outcomes(junit: Path) -> dict[str, list[str]]:
    """{'tests/test_x.py::name': [outcome of each case]} from a JUnit XML report."""
    found: dict[str, list[str]] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        path = case.get("classname", "").replace(".", "/") + ".py"
        name = case.get("name", "").split("[")[0]
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        found.setdefault(f"{path}::{name}", []).append(kinds[0] if kinds else "passed")
    return found


def run_tests(root: Path, tests: tuple[str, ...], junit: Path, timeout: float) -> dict:
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])
    )
    env.setdefault("OMP_NUM_THREADS", "1")
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", ""]
    command += ["--junitxml", str(junit), *tests]
    done = subprocess.run(
        command, cwd=root, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert junit.is_file(), done.stdout[-3000:] + done.stderr[-3000:]
    got = outcomes(junit)
    missing = [t for t in tests if t.split("[")[0] not in got]
    assert not missing, f"not run: {missing}\n{done.stdout[-3000:]}"
    return {"outcomes": got, "output": done.stdout[-4000:] + done.stderr[-2000:]}


def slug(mutant: Mutant) -> str:
    """The mutant's test id: its name in lower-case words joined by dashes."""
    return re.sub(r"[^a-z0-9]+", "-", mutant.name.lower()).strip("-")


def base_id(test: str) -> str:
    return test.split("[")[0]


@pytest.mark.parametrize(
    "mutant",
    [pytest.param(m, marks=[pytest.mark.slow] if m.slow else [], id=slug(m)) for m in MUTANTS],
)
def test_each_mutant_fails_its_tests(copy: Path, tmp_path: Path, mutant: Mutant) -> None:
    target = copy / mutant.path
    original = target.read_text()
    target.write_text(mutated(original, mutant))
    try:
        ran = run_tests(copy, mutant.tests, tmp_path / "junit.xml", 1200 if mutant.slow else 600)
    finally:
        target.write_text(original)
    per_test = {t: ran["outcomes"][base_id(t)] for t in mutant.tests}
    if all(set(kinds) == {"skipped"} for kinds in per_test.values()):
        pytest.skip(f"the tests that kill {mutant.name!r} are skipped here")
    survived = {t: kinds for t, kinds in per_test.items() if set(kinds) != {"failure"}}
    assert not survived, (
        f"mutant {mutant.name!r} ({mutant.why}) was not killed: {survived}\n{ran['output']}"
    )


def test_the_unmutated_copy_passes_the_named_tests(copy: Path, tmp_path: Path) -> None:
    """The control: the fast named tests pass on the copy as it is."""
    tests = tuple(dict.fromkeys(t for m in MUTANTS if not m.slow for t in m.tests))
    ran = run_tests(copy, tests, tmp_path / "junit.xml", 600)
    failed = {t: k for t, k in ran["outcomes"].items() if set(k) - {"passed", "skipped"}}
    assert not failed, f"{failed}\n{ran['output']}"


def test_every_mutant_applies_once_and_names_existing_tests() -> None:
    """Cheap and first: each snippet is in its file once, each named test file exists."""
    for mutant in MUTANTS:
        source = (REPO / mutant.path).read_text()
        assert mutated(source, mutant) != source, mutant.name
        for test in mutant.tests:
            path, _, name = test.partition("::")
            assert (REPO / path).is_file() and f"def {base_id(name)}(" in (
                REPO / path
            ).read_text(), test
    assert len({slug(m) for m in MUTANTS}) == len(MUTANTS)
