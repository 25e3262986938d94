"""The Fast DDS profile the nodes run with: large shared-memory segments for camera frames.

Every entry point calls `configure_dds_environment()` before `rclpy.init()`. It points Fast DDS
at the shipped profile (config/fastdds_shm.xml) unless the user already chose a profile file.
"""
from __future__ import annotations

import logging
import os
from collections.abc import MutableMapping
from importlib import metadata
from pathlib import Path

log = logging.getLogger(__name__)

PACKAGE = "dap_led_ros"
PROFILE_NAME = "fastdds_shm.xml"
# Fast DDS 3.x (ROS 2 Kilted and later) reads the first variable, 2.x (Humble..Jazzy) the second.
# Only one is set: rmw_fastrtps on 3.x still loads the old one too, and loading the same file
# twice fails with "transport with the same id" errors.
FASTDDS3_ENV_VAR = "FASTDDS_DEFAULT_PROFILES_FILE"
FASTDDS2_ENV_VAR = "FASTRTPS_DEFAULT_PROFILES_FILE"
PROFILE_ENV_VARS = (FASTDDS3_ENV_VAR, FASTDDS2_ENV_VAR)
_FASTDDS2_DISTROS = ("humble", "iron", "jazzy")
FASTDDS_WHEELS = ("ros-fastdds", "ros-fastrtps")  # PyPI names of Fast DDS 3.x, 2.x
# Set to 1 to leave the DDS configuration entirely to the environment.
OPT_OUT_ENV_VAR = "DAP_LED_NO_DDS_PROFILE"


def shipped_profile_path() -> Path:
    """The profile installed with the package: the colcon share dir, else the package's own copy."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            shared = Path(get_package_share_directory(PACKAGE)) / "config" / PROFILE_NAME
            if shared.is_file():
                return shared
        except (PackageNotFoundError, OSError):  # not installed by colcon / no AMENT_PREFIX_PATH
            pass
    except ImportError:  # pip install without ament_index_python
        pass
    return Path(__file__).resolve().parent.parent / "data" / PROFILE_NAME


def profile_env_var(env: MutableMapping[str, str]) -> str:
    """The variable the installed Fast DDS reads its default profile file from."""
    distro = env.get("ROS_DISTRO", "").strip().lower()
    if distro:
        return FASTDDS2_ENV_VAR if distro in _FASTDDS2_DISTROS else FASTDDS3_ENV_VAR
    # pip-installed ROS wheels carry no ROS_DISTRO: ask the installed Fast DDS wheel. Its ROS package
    # was renamed with 3.0, so Kilted's wheel is ros-fastdds (3.x) and Jazzy's ros-fastrtps (2.14).
    for wheel in FASTDDS_WHEELS:
        try:
            major = int(metadata.version(wheel).split(".")[0])
        except (metadata.PackageNotFoundError, ValueError):
            continue
        return FASTDDS2_ENV_VAR if major < 3 else FASTDDS3_ENV_VAR
    return FASTDDS3_ENV_VAR


def configure_dds_environment(env: MutableMapping[str, str] | None = None) -> Path | None:
    """Select the shipped Fast DDS profile unless the user set their own; call before rclpy.init().

    Returns the profile file now in effect (the user's or ours), or None when opted out or
    when the shipped file is missing (then Fast DDS keeps its built-in defaults).
    """
    env = os.environ if env is None else env
    if env.get(OPT_OUT_ENV_VAR, "") not in ("", "0"):
        return None
    for var in PROFILE_ENV_VARS:
        if env.get(var):
            return Path(env[var])
    profile = shipped_profile_path()
    if not profile.is_file():
        log.warning("DDS profile %s not found; using Fast DDS defaults (large images may be "
                    "fragmented and lost under best-effort QoS)", profile)
        return None
    env[profile_env_var(env)] = str(profile)
    return profile
