"""Image conversion without ROS: ROS encodings, image files, sRGB transfer, resampling."""
