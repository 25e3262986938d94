"""rosbag2 tools: reading and writing bags as stored, offline enhancement, replay, the sample bag."""
