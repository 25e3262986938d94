"""`dap-led bench-node`: a real enhance_node process fed by the camera stand-in, figures read back."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from dap_led_ros.ros.node_bench import NodeBenchOptions, night_sequence, node_command

VENV_BIN = Path(sys.executable).parent


def test_the_sequence_is_dark_noisy_and_moving():
    frames = night_sequence(64, 48, count=5)
    assert len(frames) == 5 and frames[0].shape == (48, 64, 3) and frames[0].dtype == np.uint8
    assert frames[0].mean() < 80  # night
    assert np.abs(frames[0].astype(int) - frames[4].astype(int)).mean() > 1.0  # it pans


def test_the_node_command_carries_namespace_and_parameters():
    cmd = node_command(NodeBenchOptions(namespace="/b", params={"model": "quality", "threads": "2"}))
    assert cmd == ["enhance_node", "--ros-args", "-r", "__ns:=/b", "-p", "model:=quality", "-p", "threads:=2"]


def test_bench_node_measures_a_running_node(tmp_path, ros_domain_id, tiny_checkpoint):
    # overlap:=false: the one-stage worker path (the enhance_node tests run the default two-stage one).
    out = tmp_path / "out"
    proc = subprocess.run([str(VENV_BIN / "dap-led"), "bench-node", "--size", "96x64", "--rate", "10",
                           "--warmup", "0.5", "--duration", "3", "--start-timeout", "240",
                           "-p", f"model:={tiny_checkpoint}", "-p", "backend:=onnxruntime",
                           "-p", "overlap:=false",
                           "--out-dir", str(out)], capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout + proc.stderr + (out / "node_bench_node.log").read_text()
    doc = json.loads((out / "node_bench.json").read_text())
    assert doc["size"] == "96x64" and doc["received"] >= 2 and doc["fps_out"] > 0
    assert 0 < doc["latency_p50_ms"] <= doc["latency_p95_ms"]
    diag = doc["diagnostics"]  # the node's own figures, stage times included
    assert float(diag["fps_out"]) > 0 and float(diag["latency_p95_ms"]) > 0
    assert {"stage_network_p95_ms", "stage_publish_p95_ms", "stage_decode_p95_ms"} <= set(diag)
    assert "restored fps" in proc.stdout and "network" in proc.stdout


def test_bench_node_reports_a_node_that_cannot_start(tmp_path, ros_domain_id):
    proc = subprocess.run([str(VENV_BIN / "dap-led"), "bench-node", "--size", "96x64", "--duration", "1",
                           "--start-timeout", "300", "-p", f"model:={tmp_path / 'missing.safetensors'}",
                           "--out-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=200)
    # The node's configure fails; its /diagnostics says why, long before the start timeout.
    assert proc.returncode == 1
    assert "enhance_node reports: configure failed" in proc.stderr and "missing.safetensors" in proc.stderr


def test_bench_node_rejects_bad_options(tmp_path):
    proc = subprocess.run([str(VENV_BIN / "dap-led"), "bench-node", "--rate", "0", "--out-dir", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "rate" in proc.stderr
    assert not (tmp_path / "o").exists()  # refused before anything is written
    proc = subprocess.run([str(VENV_BIN / "dap-led"), "bench-node", "-p", "model", "--out-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "name:=value" in proc.stderr


def test_bench_node_with_several_cameras_one_node_and_separate_nodes(tmp_path, ros_domain_id, tiny_checkpoint):
    for extra in ([], ["--separate-nodes"]):
        out = tmp_path / ("separate" if extra else "one")
        proc = subprocess.run([str(VENV_BIN / "dap-led"), "bench-node", "--size", "64x48", "--rate", "5",
                               "--warmup", "0.5", "--duration", "3", "--start-timeout", "240", "--cameras", "2",
                               *extra, "-p", f"model:={tiny_checkpoint}", "-p", "backend:=torch",
                               "-p", "threads:=1", "--out-dir", str(out)],
                              capture_output=True, text=True, timeout=400)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        doc = json.loads((out / "node_bench.json").read_text())
        assert doc["cameras"] == 2 and doc["separate_nodes"] == bool(extra)
        assert len(doc["per_camera_fps"]) == 2 and all(f > 0 for f in doc["per_camera_fps"])
        assert doc["rss_mib"] > 50 and doc["rss_peak_mib"] >= doc["rss_mib"] * 0.9
        if extra:
            assert "2 single-camera enhance_nodes" in proc.stdout
            assert (out / "node_bench_node_1.log").is_file()
        else:
            assert "one enhance_node serving 2 cameras" in proc.stdout
            assert doc["diagnostics"]["cameras"] == "cam0,cam1"
