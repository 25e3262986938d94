"""Node settings (dataclasses <-> params files), the DDS profile selection, throttled logs."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from importlib import metadata
from pathlib import Path

import pytest

from dap_led_ros.ros import dds, log_safety
from dap_led_ros.ros.enhance_node import EnhanceNodeConfig
from dap_led_ros.ros.lifecycle_base import ThrottledLog
from dap_led_ros.ros.log_safety import SafeLogger, exception_kind, message_kind, safe_line
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
    ({"tile_size": 16}, "tile_size must be in 64..8192, got 16"),
    ({"max_rate": 5}, r"unknown parameter 'max_rate' \(did you mean 'max_rate_hz'\?\) for EnhanceNodeConfig"),
    # Ranges (issue 15): a negative thread count, a diagnostics period that keeps an idle node
    # busy, non-finite floats, choices checked before configure.
    ({"threads": -4}, r"threads must be in 0..256 \(0 = library default\), got -4"),
    ({"diagnostics_period_s": 0.00001}, r"diagnostics_period_s must be in 0.1..3600, got 1e-05"),
    ({"diagnostics_period_s": 1e6}, "diagnostics_period_s must be in 0.1..3600"),
    ({"max_rate_hz": float("nan")}, "parameter 'max_rate_hz' must be a finite number, got nan"),
    ({"prior_change": float("inf")}, "parameter 'prior_change' must be a finite number"),
    ({"max_rate_hz": 1e9}, "max_rate_hz must be in 0..1000"),
    ({"max_input_pixels": 0}, "max_input_pixels must be in 1..268435456, got 0"),
    ({"max_input_pixels": 2**40}, "max_input_pixels must be in 1..268435456"),
    ({"backend": "foo"}, "backend must be one of auto, tensorrt, openvino, onnxruntime, torch; got 'foo'"),
    ({"tile_mode": "mosaic"}, "tile_mode must be one of exact, blend; got 'mosaic'"),
    ({"tile_size": 100_000}, "tile_size must be in 64..8192"),
    ({"prior_every": 0}, "prior_every must be in 1..10000"),
    ({"prior_change": 2.0}, "prior_change must be in 0..1"),
    ({"qos.input.depth": -1}, "qos.input.depth must be in 1..1000"),
])
def test_bad_settings_name_the_problem(flat, message):
    with pytest.raises(ConfigError, match=message):
        config_from_flat(EnhanceNodeConfig, flat)


def test_params_file_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="params file not found: .*nope.yaml"):
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
    assert e.model == "/m.safetensors" and e.tile_max_pixels == 1000


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


@pytest.mark.parametrize(("wheel", "version", "variable"), [
    ("ros-fastdds", "3.2.3", dds.FASTDDS3_ENV_VAR),    # Kilted's wheels
    ("ros-fastrtps", "2.14.5", dds.FASTDDS2_ENV_VAR),  # Jazzy's wheels: Fast DDS 2.x, renamed fastdds in 3.0
    (None, None, dds.FASTDDS3_ENV_VAR),                # neither: the newer name
])
def test_dds_variable_without_ros_distro_follows_the_installed_fast_dds_wheel(monkeypatch, wheel, version,
                                                                               variable):
    def fake_version(name: str) -> str:
        if name == wheel:
            return version
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(dds.metadata, "version", fake_version)
    assert dds.profile_env_var({}) == variable


def test_dds_variable_fits_the_fast_dds_installed_here():
    """The pip wheels set no ROS_DISTRO: the variable comes from the Fast DDS wheel in this venv
    (FASTRTPS_... for Jazzy's Fast DDS 2.14, which does not read FASTDDS_...)."""
    installed = {}
    for wheel in dds.FASTDDS_WHEELS:
        try:
            installed[wheel] = metadata.version(wheel)
        except metadata.PackageNotFoundError:
            pass
    if not installed:
        pytest.skip("no Fast DDS wheel in this environment (ROS from a distribution install)")
    major = int(next(iter(installed.values())).split(".")[0])
    expected = dds.FASTDDS2_ENV_VAR if major < 3 else dds.FASTDDS3_ENV_VAR
    assert dds.profile_env_var({}) == expected, installed


# ----------------------------------------------------------------------------- throttled log

def test_log_lines_are_escaped_to_one_line_and_cut_to_a_bounded_length():
    # A newline in an encoding forged an [INFO] line; one line was 200,301 characters.
    forged = "unsupported image encoding 'x\n[INFO] [1700000000.0] [cam.enhance_node]: all good\x1b[2J'"
    line = safe_line(forged)
    assert "\n" not in line and "\x1b" not in line
    assert line == ("unsupported image encoding 'x\\n[INFO] [1700000000.0] [cam.enhance_node]: all good"
                    "\\x1b[2J'")
    assert safe_line("bidi \u202e and line separator \u2028, emoji \U0001f600 kept") == \
        "bidi \\u202e and line separator \\u2028, emoji \U0001f600 kept"
    huge = "unsupported image encoding '" + "A" * 200_000 + "'"
    cut = safe_line(huge)
    assert len(cut) <= log_safety.MAX_LINE_CHARS + 20
    assert cut.endswith(f"...({len(huge) - log_safety.MAX_LINE_CHARS} more)")
    # Escapes count towards the limit; a short printable line is left as it is.
    assert len(safe_line("\x00" * 10_000)) <= log_safety.MAX_LINE_CHARS + 20
    assert safe_line("configured (torch (cpu, float32))") == "configured (torch (cpu, float32))"


def test_the_node_logger_escapes_every_line():
    lines: list[tuple[str, str]] = []

    class Logger:
        def info(self, m, **kw):
            lines.append(("info", m))

        def error(self, m, **kw):
            lines.append(("error", m))

        def get_effective_level(self):
            return 10

    log = SafeLogger(Logger())
    log.error("frame_id 'a\nb'")
    log.info("x" * 1000)
    assert lines[0] == ("error", "frame_id 'a\\nb'")
    assert len(lines[1][1]) < 500 and lines[1][1].endswith("more)")
    assert log.get_effective_level() == 10  # the rest is delegated


def test_throttling_is_keyed_by_the_kind_of_problem_not_its_values(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(log_safety.time, "monotonic", lambda: now[0])
    lines: list[str] = []
    log = ThrottledLog(lines.append, period_s=5.0)
    # 1000 malformed frames differing only in width gave 999 lines in 10 s.
    for width in range(1, 1001):
        log(f"dropped a malformed frame: image {width}x100000 has {width * 100000} pixels, more than "
            f"max_input_pixels=16777216")
        log(f"dropped a malformed frame: unsupported image encoding 'enc{width}\n'; supported: rgb8")
        now[0] += 1 / 128  # 1000 frames in 7.8 s
    assert len(lines) == 4  # two kinds, once at the start and once 5 s later
    assert lines[2].endswith("(639 similar lines suppressed in the last 5 s)"), lines[2]
    assert log.suppressed == 2000 - 4
    assert all("\n" not in line for line in lines)
    # A key from the caller wins over the text.
    assert log("anything", key="k") and not log("else", key="k")


def test_throttling_keys_are_bounded(monkeypatch):
    monkeypatch.setattr(log_safety.time, "monotonic", lambda: 1000.0)
    lines: list[str] = []
    log = ThrottledLog(lines.append, period_s=5.0, max_kinds=8)
    for i in range(100):
        log(f"problem {i}", key=f"kind-{i}")
    assert len(lines) == 9  # eight kinds, then all new kinds share one
    assert len(log._last) == 9


def test_kinds_mask_numbers_and_cut_quoted_values():
    assert message_kind("image 640x480 has 307200 pixels") == message_kind("image 1x2 has 2 pixels")
    assert message_kind("unsupported image encoding 'a'") == message_kind("unsupported image encoding 'b\n'")
    assert message_kind("step 1 is smaller") != message_kind("image data has 3 bytes")
    assert exception_kind(ValueError("x 1")) != exception_kind(TypeError("x 1"))
    assert len(message_kind("a" * 10_000)) <= 80


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


@pytest.mark.parametrize("content, cause", [
    (b"enhance_node:\n  ros__parameters:\n    threads: \xff\xfe\n", "is not UTF-8 text"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "is not UTF-8 text"),
    (b"enhance_node: [unclosed\n", "is not valid YAML"),
    (b"- a list\n", "must map node names"),
])
def test_params_files_that_are_not_utf8_yaml_mappings_are_refused_by_cause(tmp_path, content, cause):
    path = tmp_path / "params.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=cause):
        read_params_file(path, "enhance_node")
    with pytest.raises(ConfigError, match="not found"):
        read_params_file(tmp_path / "missing.yaml", "enhance_node")


def test_each_default_is_stated_once():
    """The node's and the CLI's network settings are EnhancerConfig's (the node differs only where it
    serves live video: the model for the device, fusion on); one fusion window, one restart gap, one
    input-size guard."""
    import argparse
    from dataclasses import fields, replace

    from dap_led_ros.bag.frames import decode_frame
    from dap_led_ros.cli.args import add_backend_args, enhancer_config_from_args
    from dap_led_ros.enhancer import EnhancerConfig
    from dap_led_ros.imaging.image_encoding import DEFAULT_MAX_INPUT_PIXELS
    from dap_led_ros.ros.detect_node import DetectNodeConfig
    from dap_led_ros.runtime.temporal_fusion import FusionSettings
    from dap_led_ros.runtime.video_stream import DEFAULT_MAX_GAP_S, RestartPolicy

    core = EnhancerConfig()
    assert {f.name for f in fields(EnhancerConfig)} <= {f.name for f in fields(EnhanceNodeConfig)}
    assert EnhanceNodeConfig().enhancer_config() == replace(core, model="auto", temporal=True)
    parser = argparse.ArgumentParser()
    add_backend_args(parser)
    assert enhancer_config_from_args(parser.parse_args([])) == core
    assert core.fusion_settings() == FusionSettings()
    assert core.temporal_max_gap_s == DEFAULT_MAX_GAP_S and RestartPolicy().max_gap_ns == round(DEFAULT_MAX_GAP_S * 1e9)
    assert EnhanceNodeConfig().max_input_pixels == DetectNodeConfig().max_input_pixels == DEFAULT_MAX_INPUT_PIXELS
    assert decode_frame.__defaults__[-1] == DEFAULT_MAX_INPUT_PIXELS


def test_per_topic_qos_overrides_are_refused_not_ignored():
    from dap_led_ros.ros.params import qos_overrides_message, unknown_parameter_overrides

    class Node:
        _parameter_overrides = {"qos_overrides./cam/image_raw.subscription.reliability": "reliable",
                                "model": "x"}

    message = qos_overrides_message(Node())
    assert message.startswith("qos_overrides./cam/image_raw.subscription.reliability: per-topic")
    assert "qos.input.reliability" in message
    assert unknown_parameter_overrides(Node(), EnhanceNodeConfig) == []  # named by its own message
    Node._parameter_overrides = {"model": "x"}
    assert qos_overrides_message(Node()) == ""
