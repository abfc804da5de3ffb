"""Offline evaluation on recorded bags: reading and writing rosbags, labels, metrics.

Pure Python through `rosbags` (rosbag2 mcap and sqlite3, ROS 1): no ROS
installation needed. `evaluate.py` is the `evaluate_bag` command; it drives
the live node's streaming core (`mtl_perception.stream`) unchanged.
"""
