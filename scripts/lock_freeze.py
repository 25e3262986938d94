"""`pip freeze` for requirements.lock: every installed distribution as `name==version`, less pip and
less the egg-info copies that ROS wheels carry inside them (ros-rclpy installs `rclpy.egg-info`
beside its own dist-info: `rclpy==9.1.2` names no PyPI project, `ros-rclpy==9.1.2` does)."""
from __future__ import annotations

import subprocess
import sys
from importlib import metadata

from packaging.utils import canonicalize_name

embedded = {canonicalize_name(d.metadata["Name"]) for d in metadata.distributions()
            if str(getattr(d, "_path", "")).endswith(".egg-info")}
frozen = subprocess.run([sys.executable, "-m", "pip", "freeze", "--all", "--exclude-editable"],
                        capture_output=True, text=True, check=True).stdout.splitlines()
for line in frozen:
    name = canonicalize_name(line.split("==", 1)[0])
    if "==" in line and name != "pip" and name not in embedded:
        print(line)
