"""ros2_fed: FlowEneDet misclassification/OOD detection fused with semantic segmentation.

The pure-python core (fed/, scores, eval/, engine/, codec, alerts, viz) never imports rclpy;
only node.py (and the live replay tool) do, so everything else is testable without ROS.
"""

__version__ = "0.1.0"
#: Version of the graph FusedDetector (ros2_fed.detector) builds: bump when the exported graph
#: changes for the same weights + config (invalidates engine caches). Here, not in detector.py,
#: so the cache can compute its key for an existing engine without importing torch.
GRAPH_VERSION = 3  # 2: SML post-processing at image resolution; 3: its cheaper graph
