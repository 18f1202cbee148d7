"""ros2_fed: FlowEneDet misclassification/OOD detection fused with semantic segmentation.

The pure-python core (fed/, scores, eval/, engine/, codec, alerts, viz) never imports rclpy;
only node.py (and the live replay tool) do, so everything else is testable without ROS.
"""

__version__ = "0.1.0"
