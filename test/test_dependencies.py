"""The locks (what setup.sh installs) agree with the loose requirements and with this venv.

Two ROS 2 distributions: requirements.txt + requirements.lock (Kilted's wheels, `.venv`), and for
DAP_LED_ROS_DISTRO=jazzy requirements.txt without its `ros-` lines + requirements-jazzy.txt, locked in
requirements-jazzy.lock (`.venv-jazzy`); scripts/ros_distro.sh."""
from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
DISTROS = ("kilted", "jazzy")


def _requirements(path: Path) -> list[Requirement]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [Requirement(line) for line in lines if line]


def _distro_requirements(distro: str) -> list[Requirement]:
    reqs = _requirements(ROOT / "requirements.txt")
    if distro == "kilted":
        return reqs
    return [r for r in reqs if not r.name.startswith("ros-")] + _requirements(ROOT / f"requirements-{distro}.txt")


def _lock_path(distro: str) -> Path:
    return ROOT / ("requirements.lock" if distro == "kilted" else f"requirements-{distro}.lock")


def _lock(distro: str) -> dict[str, str]:
    pins = {}
    for req in _requirements(_lock_path(distro)):
        (spec,) = req.specifier
        assert spec.operator == "==", f"{req} is not an exact pin"
        pins[canonicalize_name(req.name)] = spec.version
    return pins


def _this_venvs_distro() -> str:
    """The distribution whose ROS wheels are installed here (Jazzy's are named ros-jazzy-*)."""
    for distro in DISTROS[1:]:
        names = [r.name for r in _requirements(ROOT / f"requirements-{distro}.txt")]
        try:
            metadata.version(names[0])
            return distro
        except metadata.PackageNotFoundError:
            pass
    return "kilted"


@pytest.mark.parametrize("distro", DISTROS)
def test_every_requirement_is_locked_within_its_range(distro):
    pins = _lock(distro)
    torch = subprocess.run([str(ROOT / "scripts" / "setup.sh"), "--print-torch"], capture_output=True,
                           text=True, check=True).stdout.split()
    for req in _distro_requirements(distro) + [Requirement(t) for t in torch]:
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is a requirement but not in {_lock_path(distro).name}"
        assert req.specifier.contains(pins[name], prereleases=True), \
            f"{_lock_path(distro).name} pins {req.name}=={pins[name]}, outside {req.specifier}"


def test_the_locks_differ_only_in_ros_wheels():
    """Both distributions run the same everything else (the ROS wheels' own dependencies aside)."""
    kilted, jazzy = _lock("kilted"), _lock("jazzy")
    ros = {n for n in set(kilted) | set(jazzy) if n.startswith("ros-")}
    differ = {n for n in (set(kilted) | set(jazzy)) - ros if kilted.get(n) != jazzy.get(n)}
    assert not differ, {n: (kilted.get(n), jazzy.get(n)) for n in sorted(differ)}


def test_every_locked_package_is_installed():
    """Versions may differ in a venv made with --latest (that drift is what it is for)."""
    pins = _lock(_this_venvs_distro())
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    missing = sorted(set(pins) - set(installed))
    assert not missing, f"locked but not installed: {missing}"


def test_no_lock_pins_a_package_no_index_has():
    """The ROS wheels install their packages' own egg-info (ros-rclpy brings rclpy-*.egg-info): pip
    freeze lists those, but no index serves them, so a lock pinning one fails in a fresh venv."""
    embedded = {canonicalize_name(d.metadata["Name"]) for d in metadata.distributions()
                if d.read_text("INSTALLER") is None}
    pinned = sorted(embedded & set(_lock(_this_venvs_distro())))
    assert not pinned, f"pinned, but only installed inside another wheel: {pinned}"
