"""ROS 2 layer: thin rclpy nodes and message helpers on top of the ROS-free core."""
