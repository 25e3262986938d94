"""ROS 2: lifecycle nodes (one per file, with its settings), their process runner and the one-process pipeline."""
