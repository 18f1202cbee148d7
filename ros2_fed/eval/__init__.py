"""Evaluation: detection and segmentation metrics (``metrics``), dataset and rosbag replay.

Pure numpy/torch; nothing here imports rclpy except the live replay tool.
"""
