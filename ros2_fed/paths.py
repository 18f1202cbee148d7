"""Where the package's data folders are, installed or in a source checkout.

Why one module: the node, the replay tool and the demo all need ``models/`` and ``config/``;
each computing it from its own ``__file__`` broke silently when a module moved. Pure python.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

# the checkout holding ros2_fed/, models/, config/
SOURCE_ROOT = Path(__file__).resolve().parent.parent
# the engine cache's folder, when set (it wins over XDG_CACHE_HOME)
CACHE_ENV = "ROS2_FED_CACHE"


def package_dir(name: str) -> Path:
    """share/ros2_fed/NAME of the ament-installed package, else NAME/ of this source checkout."""
    try:
        from ament_index_python.packages import get_package_share_directory

        share = Path(get_package_share_directory("ros2_fed")) / name
        if share.is_dir():
            return share
    except Exception:  # pip -e checkout without an ament index
        pass
    return SOURCE_ROOT / name


def default_models_dir() -> Path:
    """models/ with the embedded default model."""
    return package_dir("models")


def fastdds_profile() -> Optional[Path]:
    """The Fast DDS large-data profile (config/fastdds_large_data.xml), if present."""
    path = package_dir("config") / "fastdds_large_data.xml"
    return path if path.is_file() else None


def engine_cache_dir() -> Path:
    """Where built engines are kept: ``$ROS2_FED_CACHE``, else ``$XDG_CACHE_HOME/ros2_fed``,
    else ``~/.cache/ros2_fed``.

    Why XDG: a machine that moves every user cache (a small home, a tmpfs) says so with
    XDG_CACHE_HOME; as the XDG Base Directory spec asks, an empty or relative value is ignored.
    """
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path("~/.cache").expanduser()
    return base / "ros2_fed"
