"""Small things a new user reads: help texts that name what exists, messages that say what
happened (not a temporary file, not "the first start builds it" on a cache hit, not "neither
JPEG nor PNG" for a cut-off JPEG, not torch's advice to unpickle an untrusted file), and docs
whose lists are the code's (the runtime choices in config/fed.yaml, the parameter groups in
docs/parameters.md, README's demo sentence against the demo's results).
"""

from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from ros2_fed import codec
from ros2_fed.pipeline import model_spec
from ros2_fed.pipeline.model_spec import DEFAULT_FED, ModelSpec
from ros2_fed.pipeline.params import PARAMETER_NAMES, PARAMETER_SPECS

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------- messages


@pytest.mark.parametrize("hit", [True, False])
def test_a_cache_hit_is_not_announced_as_a_build(
    monkeypatch: pytest.MonkeyPatch, hit: bool
) -> None:
    engine = SimpleNamespace(cache_hit=hit, path="/cache/engine.onnx")
    monkeypatch.setattr(model_spec, "open_cached", lambda *a, **kw: engine)
    said: list[str] = []
    spec = ModelSpec.from_params({}).resolved()
    assert model_spec.open_engine(spec, progress=said.append) is engine
    first = f"opening the cached engine for {spec.describe()}"
    # a miss is announced by the cache itself ("engine cache miss ...: building")
    assert said == ([first, "engine cache hit: /cache/engine.onnx"] if hit else [first])


def test_an_unwritable_out_names_the_file_asked_for(capsys: pytest.CaptureFixture) -> None:
    from ros2_fed.engine import cli_export

    models = REPO / "models"
    code = cli_export.main(
        [
            "--backbone",
            str(models / "tinyseg_synthroad"),
            "--fed",
            str(models / DEFAULT_FED),
            "--height",
            "64",
            "--width",
            "128",
            "--out",
            "/proc/x.onnx",
            "--quiet",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err == "fed_export: error: cannot write /proc/x.onnx: No such file or directory"


@pytest.mark.parametrize(
    ("data", "what"),
    [(b"\xff\xd8", "JPEG"), (b"\xff", "JPEG"), (b"\x89PNG\r\n", "PNG")],
    ids=["jpeg_2_bytes", "jpeg_1_byte", "png_6_bytes"],
)
def test_a_file_cut_off_in_its_signature_is_a_truncated_file(data: bytes, what: str) -> None:
    with pytest.raises(codec.ImageDecodeError) as refused:
        codec.to_rgb8(SimpleNamespace(format="jpeg", data=data))
    assert refused.value.kind == "corrupt_compressed"
    assert f"a truncated {what} ({len(data)} bytes" in str(refused.value)
    assert "neither" not in str(refused.value)
    with pytest.raises(codec.ImageDecodeError, match="cut off inside its signature"):
        codec.read_compressed_header(data)
    # other bytes are still another format
    with pytest.raises(codec.ImageDecodeError) as other:
        codec.to_rgb8(SimpleNamespace(format="jpeg", data=b"\xff\xd9"))
    assert "neither JPEG nor PNG" in str(other.value)


class _Evil:
    def __reduce__(self):  # what an attacker's checkpoint holds: a call on load
        return (os.system, ("echo pwned",))


class Custom:  # a class torch's safe loader does not know (its message has terminal colours)
    pass


@pytest.mark.parametrize(
    ("payload", "reason"),
    [(_Evil(), "GLOBAL posix.system whose module posix is blocked"), (Custom(), "Custom")],
    ids=["code", "custom_class"],
)
def test_fed_convert_of_a_pickle_names_why_in_plain_text(
    tmp_path: Path, capsys: pytest.CaptureFixture, payload: object, reason: str
) -> None:
    from ros2_fed.backbones import cli_convert

    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"state_dict": payload}, protocol=2))
    assert cli_convert.main([str(evil), str(tmp_path / "out")]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "\x1b" not in err and len(err.splitlines()) == 1, err
    assert err.startswith(f"fed_convert: error: {evil}: not loaded: ") and reason in err, err
    assert "weights_only` set to `False`" not in err and "add_safe_globals" not in err, err
    assert err.endswith("torch.save(model.state_dict(), PATH)"), err  # a whole sentence
    assert "pwned" not in captured.out and not (tmp_path / "out.safetensors").exists()


# ------------------------------------------------------------------------------ help texts


def test_the_replay_help_names_the_default_fed() -> None:
    from ros2_fed.eval.fleet import cli as fleet_cli
    from ros2_fed.eval.replay import cli as bag_cli

    for parser in (bag_cli.build_parser(), fleet_cli.build_parser()):
        text = " ".join(parser._option_string_actions["--fed"].help.split())
        assert f"models/{DEFAULT_FED}" in text and "FED-U" not in text, text


def test_fed_export_examples_name_shipped_models() -> None:
    from ros2_fed.engine import cli_export

    named = set(re.findall(r"models/([\w.]+)", cli_export.__doc__ or ""))
    assert named, "no shipped model in the examples"
    for name in named:
        assert (REPO / "models" / f"{name}.safetensors").is_file(), name


# ----------------------------------------------------------------------------------- docs


@pytest.mark.parametrize("name", ["runtime", "score", "precision"])
def test_fed_yaml_lists_each_choice(name: str) -> None:
    """The comment above the key lists the parameter's choices (torch-tensorrt was missing)."""
    lines = (REPO / "config" / "fed.yaml").read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith(f"{name}:"))
    above = []
    for line in reversed(lines[:at]):
        if not line.strip().startswith("#"):
            break
        above.insert(0, line.strip().lstrip("# "))
    listed = re.search(r"[\w-]+(?: \| [\w-]+)+", " ".join(above))
    assert listed is not None, above
    choices = {c for c in PARAMETER_SPECS[name].choices if c}
    assert set(listed.group(0).split(" | ")) == choices


def test_the_parameter_groups_table_covers_every_parameter() -> None:
    page = (REPO / "docs" / "parameters.md").read_text()
    table = page.split("| group |", 1)[1].split("\n\n", 1)[0]
    groups = {f"`{n.split('.')[0]}.*`" if "." in n else f"`{n}`" for n in PARAMETER_NAMES}
    assert {g for g in groups if g not in table} == set()


def test_readme_demo_sentence_names_the_levels_the_demo_reached() -> None:
    readme = (REPO / "README.md").read_text()
    said = re.search(r"the alert rises from (\w+) to (\w+)(?: and (\w+))?", readme)
    assert said is not None
    results = json.loads((REPO / "docs" / "demo_results.json").read_text())
    reached = {level for level, count in results["alerts"]["counts"].items() if count}
    assert {level for level in said.groups() if level} == reached
