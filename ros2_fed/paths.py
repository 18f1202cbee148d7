"""Where the package's data folders are, installed or in a source checkout.

Why one module: the node, the replay tool and the demo all need ``models/`` and ``config/``;
each computing it from its own ``__file__`` broke silently when a module moved. Pure python.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

# the checkout holding ros2_fed/, models/, config/
SOURCE_ROOT = Path(__file__).resolve().parent.parent


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
