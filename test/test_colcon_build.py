"""`colcon build` builds and installs the package as a ROS 2 workspace would, without touching the
source tree: the install has what `ros2 launch` / `ros2 run` look for, and the installed `dap-led`
runs. colcon comes from requirements.txt (colcon-common-extensions); it builds the repo in place
(--base-paths) into a temporary build/install/log base.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "dap_led_ros"
COLCON = Path(sys.executable).parent / "colcon"
BUILD_TIMEOUT_S = 600
PYTHON_DIR = f"python{sys.version_info.major}.{sys.version_info.minor}"
CONSOLE_SCRIPTS = ("enhance_node", "detect_node", "depth_node", "dap-led")

pytestmark = pytest.mark.timeout(BUILD_TIMEOUT_S + 300)


def _source_tree_outputs() -> dict[str, int]:
    """What a build could leave in the repo root: build/, install/, log/, *.egg-info (with the
    mtimes of an egg-info's files: `pip install -e .` leaves one there, a build must not rewrite it)."""
    found = {}
    for path in ROOT.iterdir():
        if path.name in ("build", "install", "log") or path.name.endswith(".egg-info"):
            found[path.name] = path.stat().st_mtime_ns
            if path.is_dir() and path.name.endswith(".egg-info"):
                for file in path.iterdir():
                    found[f"{path.name}/{file.name}"] = file.stat().st_mtime_ns
    return found


@pytest.fixture(scope="module")
def colcon_install(tmp_path_factory):
    if not COLCON.exists():
        pytest.skip(f"colcon is not installed in this venv ({COLCON}): "
                    "pip install -r requirements.lock (colcon-common-extensions)")
    base = tmp_path_factory.mktemp("colcon")
    env = dict(os.environ)
    env["COLCON_HOME"] = str(base / "colcon_home")  # no user defaults (e.g. --symlink-install)
    for name in ("COLCON_DEFAULTS_FILE", "COLCON_LOG_PATH", "COLCON_PREFIX_PATH"):
        env.pop(name, None)
    before = _source_tree_outputs()
    command = [str(COLCON), "--log-base", str(base / "log"), "build",
               "--base-paths", str(ROOT), "--packages-select", PACKAGE,
               "--build-base", str(base / "build"), "--install-base", str(base / "install"),
               "--executor", "sequential", "--event-handlers", "console_direct-"]
    done = subprocess.run(command, cwd=base, env=env, capture_output=True, text=True,
                          timeout=BUILD_TIMEOUT_S)
    assert done.returncode == 0, (f"colcon build failed ({done.returncode}):\n{done.stdout[-4000:]}\n"
                                  f"{done.stderr[-4000:]}")
    assert "1 package finished" in done.stdout + done.stderr, done.stdout[-2000:]
    return {"install": base / "install", "before": before, "after": _source_tree_outputs(),
            "cwd": base}


def _prefix(install: Path) -> Path:
    """The package's install prefix: install/<pkg> (colcon's default isolated layout) or install
    (--merge-install)."""
    return install / PACKAGE if (install / PACKAGE).is_dir() else install


def _site_packages(prefix: Path) -> Path:
    return prefix / "lib" / PYTHON_DIR / "site-packages"


def test_build_does_not_touch_the_source_tree(colcon_install):
    assert colcon_install["after"] == colcon_install["before"], \
        "colcon build wrote build/, install/, log/ or an egg-info into the repo root"


def test_install_has_what_ros2_launch_and_run_look_for(colcon_install):
    install = colcon_install["install"]
    prefix = _prefix(install)
    share = prefix / "share" / PACKAGE
    assert (share / "package.xml").read_bytes() == (ROOT / "package.xml").read_bytes()
    assert (share / "launch" / "enhance.launch.py").is_file()
    configs = {p.name for p in (share / "config").glob("*.yaml")}
    assert configs == {p.name for p in (ROOT / "config").glob("*.yaml")} and "enhance.yaml" in configs
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / PACKAGE).is_file()
    assert (install / "setup.bash").is_file() and (install / "local_setup.bash").is_file()
    assert (_site_packages(prefix) / PACKAGE / "cli" / "__init__.py").is_file()
    for name in CONSOLE_SCRIPTS:  # `ros2 run dap_led_ros <name>` runs <prefix>/lib/dap_led_ros/<name>
        script = prefix / "lib" / PACKAGE / name
        assert script.is_file() and os.access(script, os.X_OK), f"{script} missing or not executable"


def test_installed_dap_led_runs_from_the_install(colcon_install):
    prefix = _prefix(colcon_install["install"])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(_site_packages(prefix))] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    where = subprocess.run([sys.executable, "-c", "import dap_led_ros; print(dap_led_ros.__file__)"],
                           cwd=colcon_install["cwd"], env=env, capture_output=True, text=True,
                           timeout=120, check=True).stdout.strip()
    assert Path(where).is_relative_to(_site_packages(prefix)), \
        f"dap_led_ros imports from {where}, not from the colcon install"
    done = subprocess.run([str(prefix / "lib" / PACKAGE / "dap-led"), "--help"],
                          cwd=colcon_install["cwd"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, f"dap-led --help exited {done.returncode}:\n{done.stderr[-4000:]}"
    assert "usage: dap-led" in done.stdout, done.stdout[:2000]
