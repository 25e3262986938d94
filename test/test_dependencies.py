"""requirements.lock (what setup.sh installs) agrees with requirements.txt and with this venv."""
from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def _requirements(path: Path) -> list[Requirement]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [Requirement(line) for line in lines if line]


def _lock() -> dict[str, str]:
    pins = {}
    for req in _requirements(ROOT / "requirements.lock"):
        (spec,) = req.specifier
        assert spec.operator == "==", f"{req} is not an exact pin"
        pins[canonicalize_name(req.name)] = spec.version
    return pins


def test_every_requirement_is_locked_within_its_range():
    pins = _lock()
    torch = subprocess.run([str(ROOT / "scripts" / "setup.sh"), "--print-torch"], capture_output=True,
                           text=True, check=True).stdout.split()
    for req in _requirements(ROOT / "requirements.txt") + [Requirement(t) for t in torch]:
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is in requirements.txt but not in requirements.lock"
        assert req.specifier.contains(pins[name], prereleases=True), \
            f"requirements.lock pins {req.name}=={pins[name]}, outside {req.specifier}"


def test_every_locked_package_is_installed():
    """Versions may differ in a venv made with --latest (that drift is what it is for)."""
    pins = _lock()
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    missing = sorted(set(pins) - set(installed))
    assert not missing, f"locked but not installed: {missing}"


def test_no_locked_name_is_a_copy_embedded_in_another_wheel():
    """ROS wheels carry egg-info copies (ros-rclpy installs rclpy.egg-info): such a name is no PyPI
    project, and a fresh install of the lock fails on it ("No matching distribution for rclpy")."""
    embedded = [name for name in _lock()
                if str(getattr(metadata.distribution(name), "_path", "")).endswith(".egg-info")]
    assert not embedded, f"requirements.lock names embedded copies: {embedded}"
