"""ament_python package definition for ros2_fed.

`colcon build` on a vehicle and `pip install -e .` on a developer machine both use this
file: data_files put launch/config/models where `ros2 launch` and `get_package_share_directory`
find them, and console_scripts become the `ros2 run ros2_fed NAME` executables.
"""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "ros2_fed"

# Every console script is `ros2 run ros2_fed NAME`; each one has --help.
CONSOLE_SCRIPTS: list[str] = [
    "fed_convert = ros2_fed.backbones.cli_convert:main",
    "fed_export = ros2_fed.engine.cli_export:main",
    "fed_synthroad = training.cli_synthroad:main",
    "fed_train_backbone = training.train_backbone:main",
    "fed_stats = training.stats:main",
    "fed_calibrate = training.calibrate:main",
    "fed_train = training.train_fed:main",
    "fed_eval = training.cli_eval:main",
    "fed_default_model = training.default_model:main",
    "fed_node = ros2_fed.node:main",
    "fed_lifecycle_node = ros2_fed.lifecycle_node:main",
    "fed_bag_eval = ros2_fed.eval.replay.cli:main",
    "fed_fleet_eval = ros2_fed.eval.fleet.cli:main",
    "fed_synthroad_bag = training.synthroad_bag:main",
    "fed_demo = ros2_fed.demo:main",
]

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=["ros2_fed", "ros2_fed.*", "training", "training.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (
            f"share/{PACKAGE}/config",
            glob("config/*.yaml") + glob("config/*.xml") + glob("config/*.rviz"),
        ),
        (f"share/{PACKAGE}/models", glob("models/*.safetensors") + glob("models/*.json")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="ros2_fed developers",
    maintainer_email="dev@ros2-fed.invalid",
    description=(
        "FlowEneDet misclassification/OOD detection fused with semantic segmentation for ROS 2"
    ),
    license="Apache-2.0",
    entry_points={"console_scripts": CONSOLE_SCRIPTS},
)
