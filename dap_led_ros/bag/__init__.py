"""rosbag2 tools built on the pure-Python `rosbags` library: offline enhancement, replay, sample bag."""
