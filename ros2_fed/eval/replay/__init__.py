"""Rosbag replay evaluation (``fed_bag_eval``): bags in, node outputs + a scored report out.

- :mod:`.bagio` — rosbag2 writing and CDR (de)serialisation with ``rosbags`` (no rclpy);
- :mod:`.bag` — reading and validating input bags (clear errors naming file/topic/type),
  frames joined with their ground truth by header stamp;
- :mod:`.scoring` — OOD / IDM / mIoU accumulation with the same code paths as ``fed_eval``
  (``training.evaluation``), the node's confidence next to the baseline scores;
- :mod:`.offline` — the engine over every frame, as fast as possible;
- :mod:`.live` — the bag played through a running ``fed_node`` over real ROS 2 topics (the
  only module here that imports rclpy);
- :mod:`.report` — report.md / report.json / mosaics;
- :mod:`.multicamera` — several camera topics: a report per camera plus a pooled one;
- :mod:`.cli` — the ``fed_bag_eval`` console script.
"""
