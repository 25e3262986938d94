"""Node settings (dataclasses <-> params files), the DDS profile selection, throttled logs."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from dap_led_ros.ros import dds
from dap_led_ros.ros.lifecycle_base import ThrottledLog
from dap_led_ros.ros.enhance_node import EnhanceNodeConfig
from dap_led_ros.ros.params import (
    ConfigError,
    config_from_flat,
    flat_defaults,
    load_params_file,
    read_params_file,
)

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_enhance_yaml_lists_exactly_the_defaults():
    flat = read_params_file(ROOT / "config" / "enhance.yaml", "enhance_node")
    assert set(flat) == set(flat_defaults(EnhanceNodeConfig))
    assert load_params_file(EnhanceNodeConfig, ROOT / "config" / "enhance.yaml",
                            "enhance_node") == EnhanceNodeConfig()


def test_every_parameter_is_documented_with_its_default():
    doc = (ROOT / "docs" / "ros.md").read_text()

    def shown(value: object) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        return '""' if value == "" else str(value)

    for name, default in flat_defaults(EnhanceNodeConfig).items():
        row = f"| `{name}` | `{shown(default)}` |"
        assert row in doc, f"docs/ros.md lacks the row {row}"


def test_sections_apply_from_general_to_specific(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("""
/**:
  ros__parameters: {backend: torch, max_rate_hz: 5}
enhance_node:
  ros__parameters: {max_rate_hz: 7, qos: {input: {reliability: reliable, depth: 1}}}
/front/enhance_node:
  ros__parameters: {device: cuda:1}
other_node:
  ros__parameters: {backend: tensorrt}
""")
    cfg = load_params_file(EnhanceNodeConfig, f, "enhance_node", namespace="/front")
    assert cfg.backend == "torch"
    assert cfg.max_rate_hz == 7.0 and isinstance(cfg.max_rate_hz, float)  # int accepted
    assert (cfg.qos.input.reliability, cfg.qos.input.depth) == ("reliable", 1)
    assert cfg.qos.output.reliability == "reliable"  # untouched default
    assert cfg.device == "cuda:1"
    assert load_params_file(EnhanceNodeConfig, f, "enhance_node").device == "auto"  # the default


@pytest.mark.parametrize("flat, message", [
    ({"qos.input.reliability": "fast"}, "qos.input.reliability must be one of best_effort, reliable"),
    ({"qos.output.depth": 0}, r"qos.output.depth must be in 1..1000, got 0"),
    ({"qos.input.durability": "forever"}, "qos.input.durability must be one of"),
    ({"max_rate_hz": -1}, "max_rate_hz must be >= 0"),
    ({"max_rate_hz": "fast"}, "parameter 'max_rate_hz' must be a float, got 'fast'"),
    ({"autostart": "yes"}, "parameter 'autostart' must be a bool"),
    ({"qos.input.depth": True}, "parameter 'qos.input.depth' must be an int"),
    ({"output_encoding": "jpeg"}, "output_encoding must be 'same_family' or one of"),
    ({"device": "tpu"}, "device must be auto, cpu, cuda or cuda:N"),
    ({"tile_size": 16}, "tile_size >= 64"),
    ({"max_rate": 5}, "unknown parameter.*max_rate for EnhanceNodeConfig"),
])
def test_bad_settings_name_the_problem(flat, message):
    with pytest.raises(ConfigError, match=message):
        config_from_flat(EnhanceNodeConfig, flat)


def test_params_file_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="cannot read params file"):
        load_params_file(EnhanceNodeConfig, missing, "enhance_node")
    bad = tmp_path / "bad.yaml"
    bad.write_text("enhance_node: [1, 2]\n")
    with pytest.raises(ConfigError, match="needs a 'ros__parameters' mapping"):
        load_params_file(EnhanceNodeConfig, bad, "enhance_node")
    typo = tmp_path / "typo.yaml"
    typo.write_text("enhance_node:\n  ros__parameters: {qos: {input: {depht: 3}}}\n")
    with pytest.raises(ConfigError, match=r"typo.yaml \[enhance_node\]: unknown parameter.*qos.input.depht"):
        load_params_file(EnhanceNodeConfig, typo, "enhance_node")


def test_enhancer_settings_map_empty_strings_to_defaults():
    e = EnhanceNodeConfig(model="", engine="").enhancer_config()
    assert e.model is None and e.engine is None
    # The node's own default: the real-time model on the CPU (resolved by the Enhancer).
    assert EnhanceNodeConfig().enhancer_config().model == "auto"
    e = EnhanceNodeConfig(model="/m.safetensors", tile_max_pixels=1000).enhancer_config()
    assert e.model == "/m.safetensors" and e.max_pixels == 1000


# ----------------------------------------------------------------------------- DDS profile

def test_dds_profile_is_shipped_in_both_places_and_selects_large_shm():
    packaged = ROOT / "dap_led_ros" / "data" / dds.PROFILE_NAME
    assert packaged.read_bytes() == (ROOT / "config" / dds.PROFILE_NAME).read_bytes()
    assert dds.shipped_profile_path().read_bytes() == packaged.read_bytes()
    ns = {"d": "http://www.eprosima.com"}
    root = ET.parse(packaged).getroot()
    shm = [t for t in root.iterfind(".//d:transport_descriptor", ns)
           if t.findtext("d:type", namespaces=ns) == "SHM"]
    assert len(shm) == 1
    segment = int(shm[0].findtext("d:segment_size", namespaces=ns))
    assert segment >= 64 * 1024 * 1024
    assert int(shm[0].findtext("d:maxMessageSize", namespaces=ns)) <= segment
    default = root.find(".//d:participant[@is_default_profile='true']", ns)
    used = [t.text for t in default.iterfind(".//d:userTransports/d:transport_id", ns)]
    assert used == ["dap_led_shm", "dap_led_udp"]


def test_dds_environment_respects_the_user_and_picks_the_right_variable():
    env: dict[str, str] = {"ROS_DISTRO": "jazzy"}
    assert dds.configure_dds_environment(env) == dds.shipped_profile_path()
    assert env == {"ROS_DISTRO": "jazzy", dds.FASTDDS2_ENV_VAR: str(dds.shipped_profile_path())}

    env = {"ROS_DISTRO": "kilted"}
    dds.configure_dds_environment(env)
    assert set(env) == {"ROS_DISTRO", dds.FASTDDS3_ENV_VAR}

    env = {"FASTRTPS_DEFAULT_PROFILES_FILE": "/mine.xml"}
    assert dds.configure_dds_environment(env) == Path("/mine.xml")
    assert env == {"FASTRTPS_DEFAULT_PROFILES_FILE": "/mine.xml"}

    env = {dds.OPT_OUT_ENV_VAR: "1"}
    assert dds.configure_dds_environment(env) is None
    assert env == {dds.OPT_OUT_ENV_VAR: "1"}


# ----------------------------------------------------------------------------- throttled log

def test_throttled_log_repeats_a_message_once_per_period_and_counts_the_rest():
    lines: list[str] = []
    log = ThrottledLog(lines.append, period_s=3600.0)
    for _ in range(3):
        log("bad encoding 'foo'")
    log("width 0")
    assert lines == ["bad encoding 'foo'", "width 0"]
    log = ThrottledLog(lines.append, period_s=0.0)
    log("again")
    log("again")
    assert lines[-2:] == ["again", "again"]


@pytest.mark.parametrize("node", ["enhance_node", "detect_node", "depth_node"])
def test_pipeline_params_file_lists_only_defaults(node):
    """config/pipeline.yaml documents the parameters; a changed default must not be overridden by it."""
    from dap_led_ros.ros.depth_node import DepthNodeConfig
    from dap_led_ros.ros.detect_node import DetectNodeConfig

    cls = {"enhance_node": EnhanceNodeConfig, "detect_node": DetectNodeConfig, "depth_node": DepthNodeConfig}[node]
    flat = read_params_file(ROOT / "config" / "pipeline.yaml", node)
    defaults = flat_defaults(cls)
    assert flat and {k: v for k, v in flat.items() if defaults.get(k) != v} == {}
