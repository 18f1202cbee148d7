#!/bin/bash
# The image's ROS, the workspace and the venv, then the command (docker/Dockerfile).
set -e
source "/opt/ros/${ROS_DISTRO}/setup.bash"
source /ws/install/setup.bash
source /opt/fed_venv/bin/activate
exec "$@"
