"""The data folders every entry point relies on are found from a source checkout.

Why: ``make demo`` once failed with "the embedded default model is missing" after a module
moved and its ``parents[N]`` pointed into the package instead of the checkout; nothing else
failed because every other test passes explicit paths.
"""

from __future__ import annotations

from ros2_fed.paths import SOURCE_ROOT, default_models_dir, fastdds_profile, package_dir
from ros2_fed.pipeline import DEFAULT_BACKBONE, DEFAULT_FED


def test_default_models_dir_holds_the_embedded_default_model() -> None:
    models = default_models_dir()
    for name in (DEFAULT_BACKBONE, DEFAULT_FED, "fed_c_synthroad"):
        assert (models / f"{name}.safetensors").is_file(), models / name
        assert (models / f"{name}.json").is_file(), models / name


def test_fastdds_profile_and_config_are_found() -> None:
    profile = fastdds_profile()
    assert profile is not None and profile.name == "fastdds_large_data.xml"
    assert (package_dir("config") / "fed.yaml").is_file()
    assert (package_dir("launch") / "fed.launch.py").is_file()


def test_source_root_is_the_checkout() -> None:
    assert (SOURCE_ROOT / "setup.py").is_file() and (
        SOURCE_ROOT / "ros2_fed" / "paths.py"
    ).is_file()
