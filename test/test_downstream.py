"""`dap-led eval --downstream`: box matching, precision/recall, the light-source FP rule, depth
agreement on known arrays, and the command end to end with the shipped detector."""
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from dap_led_ros import cli
from dap_led_ros.perception.detection import Detection, Detector, DetectorConfig
from dap_led_ros.perception.downstream import (
    Counts,
    DownstreamConfig,
    combined,
    covers_light,
    depth_agreement,
    evaluate_set,
    frame_counts,
    iou,
    light_mask,
    match_detections,
)

sys.path.insert(0, str(Path(__file__).parent))
from tiny_depth_model import build_tiny_depth_model  # noqa: E402


def _det(label: str, score: float, box) -> Detection:
    return Detection(class_id={"person": 1, "car": 3}.get(label, 0), label=label, score=score, box=tuple(box))


def test_iou_of_known_boxes():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0  # touching edges
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert iou((0, 0, 0, 10), (0, 0, 0, 10)) == 0.0  # empty boxes


def test_matching_same_class_each_reference_once():
    a, b, c = _det("person", 1, (0, 0, 10, 10)), _det("person", 1, (20, 0, 30, 10)), _det("car", 1, (0, 20, 10, 30))
    dets = [_det("person", 0.6, (22, 0, 32, 10)),   # B at IoU 80/120
            _det("person", 0.9, (0, 0, 10, 10)),    # A exactly
            _det("person", 0.8, (1, 0, 11, 10)),    # A again: already used -> FP
            _det("car", 0.7, (20, 0, 30, 10))]      # on B, wrong class -> FP
    m = match_detections([a, b, c], dets)
    assert [(d.score, r) for d, r in m.tp] == [(0.9, a), (0.6, b)]
    assert sorted(d.score for d in m.fp) == [0.7, 0.8]
    assert m.fn == [c]
    counts = frame_counts([a, b, c], dets, None, DownstreamConfig())
    assert counts["person"] == Counts(refs=2, tp=2, fp=1, fp_light=0, fn=0)
    assert counts["car"] == Counts(refs=1, tp=0, fp=1, fp_light=0, fn=1)
    total = Counts()
    for v in counts.values():
        total.add(v)
    assert (total.precision, total.recall) == (0.5, pytest.approx(2 / 3))


def test_matching_is_greedy_by_score_and_iou_half_counts():
    ref = _det("person", 1, (0, 0, 10, 10))
    exact, high = _det("person", 0.6, (0, 0, 10, 10)), _det("person", 0.9, (0, 0, 10, 12))
    m = match_detections([ref], [exact, high])
    assert m.tp[0][0] is high and m.fp == [exact]  # the higher score claims the box first
    assert len(match_detections([ref], [_det("person", 0.5, (0, 0, 10, 20))]).tp) == 1  # IoU exactly 0.5
    assert len(match_detections([ref], [_det("person", 0.5, (0, 0, 10, 20.1))]).tp) == 0


def test_empty_counts_have_no_precision_or_recall():
    assert math.isnan(Counts().precision) and math.isnan(Counts().recall)
    assert Counts(refs=4, fn=4).recall == 0.0


def test_a_false_positive_covering_a_saturated_blob_counts_as_on_a_light():
    low = np.full((60, 60, 3), 20, np.uint8)
    low[10:14, 10:14] = (255, 250, 0)  # 16 near-saturated pixels (max channel >= 250)
    low[40, 40] = 249                  # below the level
    mask = light_mask(low)
    assert mask.sum() == 16
    assert covers_light((0, 0, 40, 40), mask)          # 16 of 1600 pixels = 1 %
    assert not covers_light((0, 0, 50, 50), mask)      # 16 of 2500 < 1 %
    assert not covers_light((30, 30, 60, 60), mask)    # no light inside
    assert covers_light((12, 12, 13, 13), mask, fraction=1.0)
    ref = _det("person", 1, (0, 0, 40, 40))
    dets = [_det("person", 0.9, (0, 0, 40, 40)), _det("car", 0.8, (0, 0, 40, 40)), _det("car", 0.7, (20, 20, 60, 60))]
    counts = frame_counts([ref], dets, mask, DownstreamConfig())
    assert counts["person"].fp_light == 0 and counts["person"].tp == 1  # a TP on a light is no FP
    assert (counts["car"].fp, counts["car"].fp_light) == (2, 1)


def test_depth_agreement_of_known_maps():
    rng = np.random.default_rng(0)
    ref = rng.uniform(0.5, 5.0, (20, 30)).astype(np.float32)
    for kind in ("disparity", "depth"):
        absrel, delta = depth_agreement(3.7 * ref, ref, kind)  # a scaled copy agrees exactly
        assert absrel == pytest.approx(0.0, abs=1e-6) and delta == 1.0
    ones, pred = np.ones((2, 2)), np.array([[1.0, 1.0], [1.0, 2.0]])  # median 1: no rescale
    assert depth_agreement(pred, ones, "depth") == (pytest.approx(0.25), 0.75)
    assert depth_agreement(pred, ones, "disparity") == (pytest.approx(0.125), 0.75)  # depth 1/2 off by 1/2
    with_nan = np.array([[1.0, np.nan], [1.0, 2.0]])
    assert depth_agreement(with_nan, ones, "depth") == (pytest.approx(1 / 3), pytest.approx(2 / 3))
    far = np.array([[1.0, 1.0], [1.0, 1e-4]])  # a clean-frame disparity under 1 % of its 95th percentile
    assert depth_agreement(np.ones((2, 2)), far, "disparity") == (pytest.approx(0.0), 1.0)
    assert all(math.isnan(v) for v in depth_agreement(ones, np.zeros((2, 2)), "depth"))
    with pytest.raises(ValueError, match="differ in shape"):
        depth_agreement(ones, np.ones((3, 3)))


def test_evaluate_set_with_the_shipped_detector_on_a_photo():
    from skimage.data import coffee

    clean = np.ascontiguousarray(coffee())
    detector = Detector(DetectorConfig(threads=1))
    refs = detector.detect(clean)
    assert len(refs) >= 2
    samples: list = []
    res = evaluate_set([("coffee", clean, clean)], {"same": lambda x: x, "black": np.zeros_like},
                       detector.detect, DownstreamConfig(sheet_rows=1), samples=samples)
    same, black = res["detection"]["same"]["overall"], res["detection"]["black"]["overall"]
    assert same == {"refs": len(refs), "tp": len(refs), "fp": 0, "fp_light": 0, "fn": 0,
                    "precision": 1.0, "recall": 1.0}
    assert (black["tp"], black["fn"], black["recall"]) == (0, len(refs), 0.0)
    assert combined({"x": res})["same"]["tp"] == len(refs)
    assert len(samples) == 1 and len(samples[0][3]) == 3  # clean + two methods


@pytest.fixture
def depth_model(tmp_path):
    return build_tiny_depth_model(tmp_path / "depth.onnx")


def test_eval_downstream_command_prints_the_table_and_writes_the_files(tmp_path, tiny_checkpoint, depth_model,
                                                                       monkeypatch, capsys):
    monkeypatch.setenv("DAP_LED_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    rc = cli.main(["eval", "--downstream", "--out-dir", str(out), "--val-count", "2", "--val-size", "128", "192",
                   "--no-camera-set", "--model", str(tiny_checkpoint), "--backend", "onnxruntime", "--threads", "1",
                   "--depth-model", str(depth_model)])
    printed = capsys.readouterr().out
    assert rc == 0
    assert "| method | reference boxes | TP | FP | FP on lights | FN | precision | recall |" in printed
    for row in ("| degraded input |", "| auto-exposure |", "| DAP-LED |"):
        assert printed.count(row) >= 2  # detection and depth tables
    assert "AbsRel" in printed and "2 frames" in printed
    assert (out / "downstream.md").read_text() in printed
    results = json.loads((out / "downstream.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    (s,) = results["sets"].values()
    assert s["frames"] == 2 and set(s["detection"]) == {"degraded input", "auto-exposure", "DAP-LED"}
    assert all(d["frames"] >= 1 for d in s["depth"].values())
    assert (out / "downstream_plot.png").stat().st_size > 1000
    if s["reference_boxes"]:
        assert (out / "downstream_sheet_synthetic.png").stat().st_size > 1000
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # no temporary files left


def test_eval_downstream_rejects_a_bad_depth_model(tmp_path, capsys):
    out = tmp_path / "out"
    rc = cli.main(["eval", "--downstream", "--out-dir", str(out), "--depth-model", str(tmp_path / "none.onnx")])
    assert rc == 2
    assert f"--depth-model {tmp_path / 'none.onnx'} is not a file" in capsys.readouterr().err
    assert not out.exists()
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    rc = cli.main(["eval", "--downstream", "--out-dir", str(out), "--depth-model", str(junk), "--threads", "1"])
    assert rc == 2 and "cannot load depth model" in capsys.readouterr().err
    assert junk.read_bytes() == b"not a model"
