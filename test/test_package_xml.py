"""package.xml: every dependency key resolves with rosdep on Humble, Jazzy and Kilted, and every
third-party module the package imports is declared (a rosdep key, or pip via requirements.txt).

Resolution is checked offline against a snapshot of ros/rosdistro (shared/data/rosdistro, see its
SOURCES.md; or the folder named by DAP_LED_ROSDISTRO_DIR): a key resolves for a distribution when it
names a package released in <distro>_distribution.yaml, or a rosdep key of rosdep_base.yaml /
rosdep_python.yaml with a rule (apt or pip) for the distribution's Ubuntu release.
"""
from __future__ import annotations

import ast
import functools
import os
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_XML = ROOT / "package.xml"
DEFAULT_ROSDISTRO = ROOT.parent / "shared" / "data" / "rosdistro"
ROSDISTRO_FILES = ("rosdep_base.yaml", "rosdep_python.yaml", "humble_distribution.yaml",
                   "jazzy_distribution.yaml", "kilted_distribution.yaml")
UBUNTU = {"humble": "jammy", "jazzy": "noble", "kilted": "noble"}
DEPEND_TAGS = ("depend", "build_depend", "build_export_depend", "buildtool_depend",
               "buildtool_export_depend", "exec_depend", "test_depend", "doc_depend")
# rosdep installers that may key a platform's rule directly (instead of an OS release name).
INSTALLERS = {"apt", "pip", "source", "gem", "npm", "snap"}

# Import name -> its rosdep key, where they differ. ROS packages import under their own name.
MODULE_KEYS = {
    "numpy": "python3-numpy",
    "cv2": "python3-opencv",
    "yaml": "python3-yaml",
    "tqdm": "python3-tqdm",
    "matplotlib": "python3-matplotlib",
    "skimage": "python3-skimage",
    "PIL": "python3-pil",
    "torch": "python3-torch",
    "onnxruntime": "python3-onnxruntime-pip",
    "rosbags": "python3-rosbags-pip",
}
# Imports rosdep has no key for (none in the snapshot for any distribution): they are left out of
# package.xml, named in its comment, and installed with `pip install -r requirements.txt`.
# Import name -> PyPI distribution in requirements.txt.
PIP_ONLY = {
    "safetensors": "safetensors",     # checkpoints, CLIP prior weights
    "open_clip": "open-clip-torch",   # the CLIP degradation prior
    "onnx": "onnx",                   # dap-led export
    "onnx2torch": "onnx2torch",       # training's detector feature loss (training/detector_loss.py)
    "mcap": "mcap",                   # MCAP bag storage
    "zstandard": "zstandard",         # compressed bag chunks
    "ray": "ray",                     # dap-led bag over many bags (bag/fleet.py)
    "openvino": "openvino",           # the CPU backend on x86 (runtime/backends/openvino_backend.py)
}
# Optional GPU backends that come with the platform (JetPack / CUDA), in neither rosdep nor
# requirements.txt; the backends that use them report a clear error when they are missing.
PLATFORM_ONLY = {
    "tensorrt": "TensorRT backend (runtime/backends/tensorrt_build.py)",
    "pycuda": "CUDA memory for TensorRT, one of two (runtime/backends/cuda_support.py)",
    "cuda": "cuda-python, the other one (runtime/backends/cuda_support.py)",
}


# ------------------------------------------------------------------------------- package.xml


@functools.cache
def _package() -> ET.Element:
    return ET.parse(PACKAGE_XML).getroot()


def _keys() -> dict[str, list[str]]:
    """rosdep key -> the tags that declare it."""
    keys: dict[str, list[str]] = {}
    for tag in DEPEND_TAGS:
        for element in _package().iter(tag):
            keys.setdefault((element.text or "").strip(), []).append(tag)
    return keys


def _comments() -> str:
    return "\n".join(re.findall(r"<!--(.*?)-->", PACKAGE_XML.read_text(), flags=re.S))


def test_package_xml_is_format_3_ament_python():
    package = _package()
    assert package.tag == "package" and package.get("format") == "3"
    assert package.findtext("name") == "dap_led_ros"
    assert package.findtext("export/build_type") == "ament_python"
    assert "Jazzy" in package.findtext("description", ""), "the minimum distribution is stated"
    keys = _keys()
    assert "" not in keys, "an empty dependency tag"
    assert "python3-setuptools" in keys, "ament_python builds run setup.py"
    twice = {key: tags for key, tags in keys.items() if len(tags) != len(set(tags))}
    assert not twice, f"declared twice: {twice}"


# ------------------------------------------------------------------------------- rosdistro


def _rosdistro_dir() -> Path:
    env = os.environ.get("DAP_LED_ROSDISTRO_DIR")
    folder = Path(env) if env else DEFAULT_ROSDISTRO
    missing = [name for name in ROSDISTRO_FILES if not (folder / name).is_file()]
    if env and missing:
        pytest.fail(f"DAP_LED_ROSDISTRO_DIR={env} lacks {missing}")
    if missing:
        pytest.skip(f"no rosdistro snapshot at {folder} (set DAP_LED_ROSDISTRO_DIR to a folder "
                    f"with {', '.join(ROSDISTRO_FILES)})")
    return folder


@functools.cache
def _load(path: Path):
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with path.open("rb") as f:
        return yaml.load(f, Loader=loader)


@functools.cache
def _rosdep_rules(folder: Path) -> dict:
    rules: dict = {}
    for name in ("rosdep_base.yaml", "rosdep_python.yaml"):
        rules.update(_load(folder / name))
    return rules


@functools.cache
def _released(folder: Path, distro: str) -> frozenset[str]:
    packages: set[str] = set()
    for name, repo in _load(folder / f"{distro}_distribution.yaml")["repositories"].items():
        release = (repo or {}).get("release") or {}
        if release.get("version"):
            packages.update(release.get("packages") or [name])
    return frozenset(packages)


def _ubuntu_rule(rule, codename: str):
    """The rule for one Ubuntu release (None: no rule), as rosdep reads it."""
    if not isinstance(rule, dict):
        return None
    ubuntu = rule.get("ubuntu")
    if isinstance(ubuntu, dict) and not set(ubuntu) & INSTALLERS:  # keyed by release
        return ubuntu[codename] if codename in ubuntu else ubuntu.get("*")
    return ubuntu  # a package list, or an installer rule for every release


def _resolves(folder: Path, key: str, distro: str) -> bool:
    if key in _released(folder, distro):
        return True
    return _ubuntu_rule(_rosdep_rules(folder).get(key), UBUNTU[distro]) is not None


def test_resolver_reads_the_snapshot_as_rosdep_does():
    folder = _rosdistro_dir()
    assert _resolves(folder, "rclpy", "humble") and _resolves(folder, "rclpy", "kilted")
    assert _resolves(folder, "python3-torch", "jazzy")            # ubuntu: {'*': [...], focal: null}
    assert _resolves(folder, "python3-onnxruntime-pip", "humble")  # ubuntu: {pip: {packages: [...]}}
    assert not _resolves(folder, "rclpy_lifecycle", "jazzy")       # lifecycle is part of rclpy
    assert not _resolves(folder, "ament_python", "jazzy")          # a build type, not a package


@pytest.mark.parametrize("distro", sorted(UBUNTU))
def test_every_key_resolves(distro):
    folder = _rosdistro_dir()
    unresolved = sorted(key for key in _keys() if not _resolves(folder, key, distro))
    assert not unresolved, (f"rosdep cannot resolve these package.xml keys for {distro} "
                            f"(ubuntu {UBUNTU[distro]}): {unresolved}")


def test_pip_only_modules_really_have_no_rosdep_key():
    """When rosdistro gains a pip rule for one of them, declare it in package.xml instead."""
    folder = _rosdistro_dir()
    wanted = {canonicalize_name(dist): module for module, dist in PIP_ONLY.items()}
    found = {}
    for key, rule in _rosdep_rules(folder).items():
        for distro, codename in UBUNTU.items():
            ubuntu = _ubuntu_rule(rule, codename)
            pip = ubuntu.get("pip") if isinstance(ubuntu, dict) else None
            dists = pip.get("packages") if isinstance(pip, dict) else pip
            for dist in dists if isinstance(dists, list) else []:
                if canonicalize_name(dist) in wanted:
                    found.setdefault(key, set()).add(distro)
    everywhere = {key: sorted(d) for key, d in found.items() if d == set(UBUNTU)}
    assert not everywhere, f"rosdep now has keys for modules listed as pip-only: {everywhere}"


# ------------------------------------------------------------------------------- imports


def _third_party_imports() -> dict[str, set[str]]:
    """Top-level third-party module -> files importing it, over the package and its launch files."""
    modules: dict[str, set[str]] = {}
    files = sorted((ROOT / "dap_led_ros").rglob("*.py")) + sorted((ROOT / "launch").glob("*.py"))
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "dap_led_ros":
                    modules.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return modules


def test_every_third_party_import_is_declared():
    keys = _keys()
    imports = _third_party_imports()
    assert {"rclpy", "numpy", "torch"} <= set(imports), "the import scan found the package's imports"
    undeclared = {
        module: sorted(files)[:3] for module, files in sorted(imports.items())
        if MODULE_KEYS.get(module, module) not in keys
        and module not in PIP_ONLY and module not in PLATFORM_ONLY
    }
    assert not undeclared, (
        "imported but not declared: add a rosdep key to package.xml (and MODULE_KEYS here if the "
        "key is not the module name), or, where rosdep has no key, add the module to PIP_ONLY "
        f"here, to requirements.txt and to package.xml's pip comment: {undeclared}")


def test_declarations_have_no_stale_entries():
    imports = _third_party_imports()
    keys = _keys()
    stale_map = {module: key for module, key in MODULE_KEYS.items() if key not in keys}
    assert not stale_map, f"MODULE_KEYS names keys that package.xml lacks: {stale_map}"
    unused = sorted(set(PIP_ONLY) - set(imports))
    assert not unused, f"PIP_ONLY lists modules nothing imports any more: {unused}"


def test_pip_only_modules_come_from_requirements_txt_and_are_named_in_package_xml():
    lines = (line.split("#", 1)[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines())
    required = {canonicalize_name(Requirement(line).name) for line in lines if line}
    missing = sorted(dist for dist in PIP_ONLY.values() if canonicalize_name(dist) not in required)
    assert not missing, f"pip-only dependencies missing from requirements.txt: {missing}"
    comments = _comments()
    unnamed = sorted(dist for dist in PIP_ONLY.values() if dist not in comments)
    assert not unnamed, f"package.xml's comment should name the pip-only dependencies: {unnamed}"


def test_readme_pip_command_installs_the_pip_only_dependencies_in_their_ranges():
    """README's "Install with rosdep and colcon" pip line: each pip-only distribution, quoted with
    its requirements.txt range (e.g. "safetensors>=0.4"), so the two cannot drift apart."""
    lines = (line.split("#", 1)[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines())
    ranges = {canonicalize_name(req.name): f'"{req.name}{req.specifier}"'
              for req in (Requirement(line) for line in lines if line)}
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Install with rosdep and colcon", 1)[-1].split("\n## ", 1)[0]
    assert section != readme, "README.md has no section 'Install with rosdep and colcon'"
    wanted = [ranges.get(canonicalize_name(dist), f'"{dist}..."') for dist in PIP_ONLY.values()]
    missing = sorted(item for item in wanted if item not in section)
    assert not missing, f"the README section's pip install line lacks {missing}"
