"""ROS 2 glue. Only `node.py` imports rclpy; the helpers beside it (parameter
table, message contents, drawing, device choice) are plain Python so they can
be tested without a ROS 2 installation."""
