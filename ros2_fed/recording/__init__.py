"""Clip recording: the frames the model did not understand, with their context, as MCAP clips.

The vehicle side of the data engine. A :class:`~ros2_fed.recording.stage.RecordStage` in the
frame path keeps a rolling buffer of every camera message and the node's statuses; an alert, a
scene status or a driver's button (``~/save_clip``) triggers a clip from ``record.before``
seconds before to ``record.after`` seconds after; a thread writes it as an MCAP file of ROS 2
CDR messages (atomically) with a ``ros2_fed.clip`` metadata record, and keeps the folder within
its disk budget. The replay (``fed_bag_eval --offline --clips DIR``) runs the same stage on
recorded drives.

- :mod:`.config` - the ``record.*`` settings;
- :mod:`.buffer` - the rolling buffer, bounded in time and memory;
- :mod:`.planner` - triggers -> clip windows (merging, rate limit);
- :mod:`.writer` - the writer thread: MCAP, atomic rename, index, disk budget;
- :mod:`.stage` - the frame-path stage that ties them together.

Pure python (no rclpy, no torch): the node hands in a serialiser for its messages.
"""
