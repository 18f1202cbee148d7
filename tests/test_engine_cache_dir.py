"""Where the engine cache lives: $ROS2_FED_CACHE, else $XDG_CACHE_HOME/ros2_fed, else
~/.cache/ros2_fed (the order docs/troubleshooting.md gives).

Why: a machine that moves user caches with XDG_CACHE_HOME (a small home, a tmpfs) must find the
engines there too, and fed_export and fed_node must agree on one folder.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ros2_fed.engine import cache
from ros2_fed.paths import CACHE_ENV, engine_cache_dir


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return monkeypatch


def test_without_settings_the_cache_is_under_home(clean_env, tmp_path) -> None:
    assert engine_cache_dir() == tmp_path / "home" / ".cache" / "ros2_fed"


def test_xdg_cache_home_is_honoured(clean_env, tmp_path) -> None:
    clean_env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert engine_cache_dir() == tmp_path / "xdg" / "ros2_fed"


def test_ros2_fed_cache_wins_over_xdg(clean_env, tmp_path) -> None:
    clean_env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    clean_env.setenv(CACHE_ENV, str(tmp_path / "mine"))
    assert engine_cache_dir() == tmp_path / "mine"


@pytest.mark.parametrize("value", ["", "relative/cache"])
def test_empty_or_relative_xdg_is_ignored(clean_env, tmp_path, value) -> None:
    """The XDG Base Directory spec: such a value is invalid and the default is used."""
    clean_env.setenv("XDG_CACHE_HOME", value)
    assert engine_cache_dir() == tmp_path / "home" / ".cache" / "ros2_fed"


def test_the_engine_cache_uses_the_same_folder(clean_env, tmp_path) -> None:
    clean_env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == engine_cache_dir() == Path(tmp_path / "xdg" / "ros2_fed")


def test_fed_export_help_names_the_order() -> None:
    from ros2_fed.engine.cli_export import build_parser

    text = " ".join(build_parser().format_help().split())
    assert "$ROS2_FED_CACHE, else $XDG_CACHE_HOME/ros2_fed, else ~/.cache/ros2_fed" in text
