"""Downstream perception cores (no ROS): monocular depth and object detection."""
