"""perception-bench: the independent night-camera degradation, AP and bootstrap arithmetic, the sweep
with a detector whose answers are known, and the command on real files with the shipped detector."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from dap_led_ros.cli import main
from dap_led_ros.perception.detection import Detection
from dap_led_ros.perception.night_camera import NightLevel, SensorModel, degrade, pillbox
from dap_led_ros.perception.perception_bench import (
    DEFAULT_LEVELS,
    BenchConfig,
    BenchFrame,
    Scored,
    average_precision,
    bench_frames,
    bootstrap_weights,
    interval,
    last_call_cached,
    markdown_report,
    routed,
    run_bench,
    summarise,
)
from dap_led_ros.runtime.detect_route import DetectRoute


def _scene(seed=0, size=(96, 128)):
    rng = np.random.default_rng(seed)
    img = np.full((*size, 3), 150, np.uint8)
    img[20:60, 30:50] = (220, 40, 40)
    img += rng.integers(0, 20, size=img.shape, dtype=np.uint8)
    return img


def test_degrade_is_seeded_darker_with_ev_and_leaves_its_input_alone():
    clean = _scene()
    before = clean.copy()
    a = degrade(clean, NightLevel("a", 5.0), np.random.default_rng(1))
    b = degrade(clean, NightLevel("a", 5.0), np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(clean, before)
    assert a.shape == clean.shape and a.dtype == np.uint8
    means = [degrade(clean, NightLevel("x", ev), np.random.default_rng(2)).mean() for ev in (3, 5, 7)]
    assert means[0] > means[1] > means[2]


def test_read_noise_adds_noise_and_defocus_removes_detail():
    flat = np.full((64, 64, 3), 128, np.uint8)
    quiet = degrade(flat, NightLevel("q", 4.0, read_noise=0.5), np.random.default_rng(3)).astype(float)
    loud = degrade(flat, NightLevel("l", 4.0, read_noise=20.0), np.random.default_rng(3)).astype(float)
    assert loud.std() > 1.5 * quiet.std()
    checker = ((np.indices((64, 64)).sum(0) // 2) % 2 * 255).astype(np.uint8)[..., None].repeat(3, 2)
    sensor = SensorModel(column_pattern=0.0)
    sharp = degrade(checker, NightLevel("s", 0.0, read_noise=0.0), np.random.default_rng(4), sensor)
    soft = degrade(checker, NightLevel("s", 0.0, read_noise=0.0, defocus=2.0), np.random.default_rng(4), sensor)
    lap = lambda im: cv2.Laplacian(im[..., 1].astype(np.float32), cv2.CV_32F).var()  # noqa: E731
    assert lap(soft) < 0.2 * lap(sharp)


def test_pillbox_is_a_normalised_disc_and_bad_input_is_refused():
    k = pillbox(2.0)
    assert k.shape == (5, 5) and abs(k.sum() - 1.0) < 1e-6 and k[2, 2] == k.max() and k[0, 0] == 0
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        degrade(np.zeros((4, 4), np.uint8), NightLevel("x", 1.0), np.random.default_rng())
    with pytest.raises(ValueError, match="must be >= 0"):
        degrade(_scene(), NightLevel("x", -1.0), np.random.default_rng())
    with pytest.raises(ValueError, match="adc_bits"):
        degrade(_scene(), NightLevel("x", 1.0), np.random.default_rng(), SensorModel(adc_bits=4))


def test_average_precision_by_hand():
    # sorted detections: TP, FP, TP with 3 references -> recall steps 1/3 at p=1 and 1/3 at p=2/3
    ap = average_precision(np.array([[1.0, 0.0, 1.0]]), np.array([[0.0, 1.0, 0.0]]), np.array([3.0]))
    assert ap[0] == pytest.approx(1 / 3 * 1.0 + 1 / 3 * 2 / 3)
    assert np.isnan(average_precision(np.zeros((1, 0)), np.zeros((1, 0)), np.array([0.0]))[0])


def _det(label, score, box):
    return Detection(0, label, score, box)


def test_summarise_point_estimate_and_bootstrap_rows():
    # two frames in two groups, class 0 only; frame 0: one ref found; frame 1: one ref missed + one FP
    scored = Scored()
    classes = {"person": 0}
    ref0, ref1 = _det("person", 0.9, (0, 0, 10, 10)), _det("person", 0.9, (20, 20, 30, 30))
    scored.add(0, classes, [ref0], [_det("person", 0.8, (0, 0, 10, 10))], 0.5)
    scored.add(1, classes, [ref1], [_det("person", 0.7, (50, 50, 60, 60)), _det("person", 0.2, (20, 20, 30, 30))], 0.5)
    ref_counts = np.array([[1.0], [1.0]])
    weights = np.array([[1.0, 1.0], [2.0, 0.0], [0.0, 2.0]])
    s = summarise(scored, ref_counts, np.array([0, 1]), weights, threshold=0.5)
    np.testing.assert_allclose(s["recall"], [0.5, 1.0, 0.0])
    np.testing.assert_allclose(s["precision"], [0.5, 1.0, 0.0])  # frame 1 alone: its FP only
    # point estimate: 0.8 TP, 0.7 FP, 0.2 TP over 2 refs -> 1/2 * 1 + 1/2 * 2/3
    assert s["map50"][0] == pytest.approx(0.5 + 0.5 * 2 / 3)
    w = bootstrap_weights(5, 50, seed=1)
    assert w.shape == (51, 5) and (w[0] == 1).all() and (w[1:].sum(axis=1) == 5).all()
    ci = interval(np.array([0.5, 0.2, 0.4, 0.6, 0.8]))
    assert ci["value"] == 0.5 and 0.2 <= ci["lo"] < ci["hi"] <= 0.8


def _bright_finder(rgb):
    """A detector whose answer is known: a person box wherever the red block is brighter than 60."""
    if rgb[40, 40, 0] > 60:
        return [_det("person", 0.9, (30, 20, 50, 60)), _det("bird", 0.9, (0, 0, 5, 5))]
    return []


def test_the_sweep_scores_methods_against_the_clean_references():
    frames = [BenchFrame(f"f{i}", f"g{i % 3}", _scene(i)) for i in range(6)]
    levels = [NightLevel("mild", 0.5, read_noise=0.0), NightLevel("dark", 8.0)]
    methods = {"input": lambda x: x, "brighten": lambda x: np.clip(x.astype(int) * 8, 0, 255).astype(np.uint8)}
    results, sheet = run_bench(frames, levels, methods, {"finder": _bright_finder},
                               BenchConfig(bootstrap=20, sheet_frames=1, map_min_refs=1))
    assert results["reference_boxes"] == {"finder": 6}          # the bird is no road class
    assert results["frames"] == 6 and results["groups"] == 3
    mild, dark = (results["levels"][k]["methods"] for k in ("mild", "dark"))
    assert mild["input"]["finder"]["recall"]["value"] == 1.0
    assert dark["input"]["finder"]["recall"]["value"] == 0.0
    assert dark["brighten"]["finder"]["recall"]["value"] == 1.0
    assert dark["brighten"]["finder"]["precision"]["value"] == 1.0
    assert len(sheet[0]) == 1 and len(sheet[1]) == len(levels) * len(methods)


def test_a_routed_method_restores_only_dark_frames_and_reuses_the_restoration_computed_for_them():
    calls = []

    def brighten(x):
        calls.append(x)
        return np.clip(x.astype(int) * 8, 0, 255).astype(np.uint8)

    frames = [BenchFrame(f"f{i}", f"g{i % 3}", _scene(i)) for i in range(6)]
    levels = [NightLevel("mild", 0.5, read_noise=0.0), NightLevel("dark", 8.0)]
    plain = last_call_cached(brighten)
    methods = {"input": lambda x: x, "brighten": plain, "brighten routed": routed(plain, DetectRoute(0.15))}
    seen = []

    def finder(rgb):
        seen.append(rgb)
        return _bright_finder(rgb)

    results, _ = run_bench(frames, levels, methods, {"finder": finder},
                           BenchConfig(bootstrap=20, sheet_frames=0, map_min_refs=1))
    # the detector reads each distinct frame once: the clean one, then per level the input and the
    # restoration (the routed method hands back one of the two)
    assert len(seen) == len(frames) + len(levels) * len(frames) * 2
    mild, dark = (results["levels"][k] for k in ("mild", "dark"))
    assert dark["input_luma"]["p95"] < 0.15 < mild["input_luma"]["p5"]
    # Bright frames reach the detector as they came, dark ones restored: the better of the two here.
    assert mild["methods"]["brighten routed"]["finder"] == mild["methods"]["input"]["finder"]
    assert dark["methods"]["brighten routed"]["finder"] == dark["methods"]["brighten"]["finder"]
    assert dark["methods"]["brighten routed"]["finder"]["recall"]["value"] == 1.0
    assert len(calls) == 2 * len(frames)  # once per degraded frame, however many methods reuse it
    # Paired differences: every later method against every earlier one, over the same resamples.
    gain = dark["differences"]["finder"]["brighten - input"]["recall"]
    assert (gain["value"], gain["lo"], gain["hi"]) == (1.0, 1.0, 1.0)
    same = dark["differences"]["finder"]["brighten routed - brighten"]["recall"]
    assert (same["value"], same["lo"], same["hi"]) == (0.0, 0.0, 0.0)
    assert set(mild["differences"]["finder"]) == {"brighten - input", "brighten routed - input",
                                                  "brighten routed - brighten"}
    report = markdown_report(results, [])
    assert "## Mean luma of the degraded input" in report
    assert "| dark | brighten | 1.000 [1.000, 1.000] |" in report


def test_a_routed_method_with_a_detector_level_hands_the_detector_the_restored_frame_at_that_level():
    from dap_led_ros.imaging.luma import mean_luma

    dim = lambda x: (x.astype(np.float32) * 0.8).astype(np.uint8)  # noqa: E731  a "restoration" too dark
    method = routed(dim, DetectRoute(0.3, target_level=0.4))
    dark, bright = _scene(0) // 3, _scene(1)
    assert mean_luma(dark) < 0.3 <= mean_luma(bright)
    assert mean_luma(method(dark)) == pytest.approx(0.4, abs=0.01)
    assert method(bright) is bright


def test_a_part_of_the_sweep_degrades_each_frame_as_the_whole_sweep_does():
    frames = [BenchFrame(f"f{i}", f"g{i % 3}", _scene(i)) for i in range(3)]
    def degraded(levels):
        out = []
        method = lambda x: (out.append(x.tobytes()), x)[1]  # noqa: E731
        run_bench(frames, levels, {"input": method}, {"finder": _bright_finder},
                  BenchConfig(bootstrap=10, sheet_frames=0, map_min_refs=1))
        return out

    whole = degraded(list(DEFAULT_LEVELS))
    part = degraded([DEFAULT_LEVELS[2], DEFAULT_LEVELS[4]])
    n = len(frames)
    assert part == whole[2 * n:3 * n] + whole[4 * n:5 * n]


def test_bench_frames_reads_photos_and_says_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="setup_bench_media.sh"):
        bench_frames(tmp_path, BenchConfig())
    (tmp_path / "photos").mkdir()
    cv2.imwrite(str(tmp_path / "photos" / "street__a.png"), np.zeros((300, 800, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "photos" / "street__b.jpg"), np.zeros((100, 100, 3), np.uint8))
    frames = bench_frames(tmp_path, BenchConfig(size=(512, 384)))
    assert [f.group for f in frames] == ["photo/street", "photo/street"]
    assert frames[0].rgb.shape == (192, 512, 3)   # aspect kept, inside 512 x 384


def test_the_command_runs_the_shipped_detector_and_reports_errors(tmp_path, capsys):
    media = tmp_path / "media"
    (media / "photos").mkdir(parents=True)
    for i in range(2):
        cv2.imwrite(str(media / "photos" / f"s{i}__x.png"), _scene(i)[..., ::-1])
    before = {p.name: p.read_bytes() for p in (media / "photos").iterdir()}
    out = tmp_path / "out"
    code = main(["perception-bench", "--out-dir", str(out), "--media", str(media), "--restoration", "none",
                 "--bootstrap", "20", "--threads", "1"])
    assert code == 0
    data = json.loads((out / "perception_bench.json").read_text())
    assert data["frames"] == 2 and len(data["levels"]) == 6
    assert {p.name for p in out.iterdir()} >= {"perception_bench.md", "perception_bench_plot.png"}
    assert "| -5 EV | auto-exposure + CLAHE |" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in (media / "photos").iterdir()} == before
    assert main(["perception-bench", "--out-dir", str(out), "--media", str(tmp_path / "none")]) == 2
    assert "setup_bench_media.sh" in capsys.readouterr().err
    assert main(["perception-bench", "--out-dir", str(out), "--media", str(media), "--video-stride", "0"]) == 2
    assert "video_stride >= 1" in capsys.readouterr().err
    assert main(["perception-bench", "--out-dir", str(out), "--media", str(media), "--levels", "9"]) == 2
    assert "--levels: indices 0..5" in capsys.readouterr().err
    assert main(["perception-bench", "--out-dir", str(out), "--media", str(media), "--restoration", "none",
                 "--depth-model", str(tmp_path / "no.onnx")]) == 2
    assert "is not a file" in capsys.readouterr().err


def test_runs_over_different_levels_merge_into_one_report(tmp_path, capsys):
    media = tmp_path / "media"
    (media / "photos").mkdir(parents=True)
    cv2.imwrite(str(media / "photos" / "s__x.png"), _scene(0)[..., ::-1])
    common = ["--media", str(media), "--restoration", "none", "--bootstrap", "10", "--threads", "1",
              "--sheet-frames", "0"]
    assert main(["perception-bench", "--out-dir", str(tmp_path / "a"), "--levels", "4", *common]) == 0
    assert main(["perception-bench", "--out-dir", str(tmp_path / "b"), "--levels", "0", *common]) == 0
    parts = [str(tmp_path / d / "perception_bench.json") for d in ("a", "b")]
    assert main(["perception-bench", "--out-dir", str(tmp_path / "m"), "--merge", *parts]) == 0
    merged = json.loads((tmp_path / "m" / "perception_bench.json").read_text())
    assert list(merged["levels"]) == ["-5 EV", "-6 EV, read noise 12 e-"]
    capsys.readouterr()
    assert main(["perception-bench", "--out-dir", str(tmp_path / "m"), "--merge", parts[0], parts[0]]) == 2
    assert "is in more than one run" in capsys.readouterr().err


def test_depth_agreement_is_scored_with_a_depth_model(tmp_path):
    from tiny_depth_model import build_tiny_depth_model

    media = tmp_path / "media"
    (media / "photos").mkdir(parents=True)
    cv2.imwrite(str(media / "photos" / "s__x.png"), _scene(0)[..., ::-1])
    model = build_tiny_depth_model(tmp_path / "depth.onnx")
    out = tmp_path / "out"
    assert main(["perception-bench", "--out-dir", str(out), "--media", str(media), "--restoration", "none",
                 "--bootstrap", "10", "--threads", "1", "--levels", "0", "--depth-model", str(model),
                 "--depth-preset", "midas-small"]) == 0
    depth = json.loads((out / "perception_bench.json").read_text())["levels"]["-5 EV"]["methods"]
    # the tiny model's map is the frame's brightness: darkening is close to affine on it, so after the
    # scale-and-shift alignment only the noise is left
    for m in ("degraded input", "auto-exposure", "auto-exposure + CLAHE"):
        assert 0.0 < depth[m]["depth"]["absrel"] < 0.1 and 0.9 < depth[m]["depth"]["delta1"] <= 1.0
    assert "Depth agreement" in (out / "perception_bench.md").read_text()


def test_the_media_folders_second_detector_and_depth_model_are_scored_by_default(tmp_path):
    """setup_bench_media.sh puts the second detector and FastDepth in media/models/; the command
    then scores both detectors (the shipped one first) and depth without being told."""
    from tiny_depth_model import build_tiny_depth_model
    from tiny_detectors import yolo_model

    media = tmp_path / "media"
    (media / "photos").mkdir(parents=True)
    (media / "models").mkdir()
    cv2.imwrite(str(media / "photos" / "s__x.png"), _scene(0)[..., ::-1])
    rows = np.array([[[8, 8, 40, 40, 0.9, 0]]], np.float32)  # one person, end-to-end rows
    yolo_model(media / "models" / "centernet_mbv3_coco.onnx", rows, names={0: "person"}, end2end=True)
    build_tiny_depth_model(media / "models" / "fastdepth_7.onnx")
    out = tmp_path / "out"
    assert main(["perception-bench", "--out-dir", str(out), "--media", str(media), "--restoration", "none",
                 "--bootstrap", "10", "--threads", "1", "--levels", "0"]) == 0
    data = json.loads((out / "perception_bench.json").read_text())
    methods = data["levels"]["-5 EV"]["methods"]["degraded input"]
    assert [k for k in methods if k != "depth"] == ["ssd_mobilenet_v2_coco.onnx (tf-ssd, 300x300)",
                                                    "centernet_mbv3_coco.onnx (yolo-end2end, 64x64)"]
    assert "depth" in methods and data["depth_model"].endswith("fastdepth_7.onnx")
    report = (out / "perception_bench.md").read_text()
    assert "centernet_mbv3_coco.onnx" in report
    # --no-depth and an explicit detector list leave the defaults out
    assert main(["perception-bench", "--out-dir", str(out), "--media", str(media), "--restoration", "none",
                 "--bootstrap", "10", "--threads", "1", "--levels", "0", "--no-depth",
                 "--detector-model", "shipped"]) == 0
    data = json.loads((out / "perception_bench.json").read_text())
    assert list(data["levels"]["-5 EV"]["methods"]["degraded input"]) == ["ssd_mobilenet_v2_coco.onnx (tf-ssd, 300x300)"]
    assert data["depth_model"] is None


def _level(luma, gains):
    """A result level as run_bench writes it, with only what routing reads: paired recall gains."""
    ci = lambda v: {"value": v, "lo": v - 0.02, "hi": v + 0.02}  # noqa: E731
    return {"input_luma": {"median": luma, "p5": luma * 0.9, "p95": luma * 1.1},
            "methods": {"degraded input": {"det": {}}, "DAP-LED quality": {"det": {}},
                        "DAP-LED quality routed (< 0.14)": {"det": {}}},
            "differences": {"det": {f"{m} - degraded input": {"recall": ci(g)} for m, g in gains.items()}}}


def test_the_routing_threshold_lies_between_the_brightest_level_restoration_helps_at_and_the_next():
    from dap_led_ros.perception.perception_bench import routing_thresholds

    def route(g5, g6, g7, g8, read_noise=-0.5):
        levels = {"-5 EV": _level(0.167, {"DAP-LED quality": g5}), "-6 EV": _level(0.112, {"DAP-LED quality": g6}),
                  "-7 EV": _level(0.073, {"DAP-LED quality": g7}), "-8 EV": _level(0.04, {"DAP-LED quality": g8}),
                  "-6 EV, read noise 12 e-": _level(0.112, {"DAP-LED quality": read_noise})}
        for lvl in levels.values():  # the routed method is what the route does, not a restorer to route
            lvl["differences"]["det"]["DAP-LED quality routed (< 0.14) - degraded input"] = {"recall": {"value": 0, "lo": -1, "hi": 1}}
        return routing_thresholds({"levels": levels})["det"]

    r = route(-0.03, 0.06, 0.14, 0.12)
    assert list(r) == ["DAP-LED quality"]  # routed rows are not routed again
    assert r["DAP-LED quality"]["threshold"] == round((0.112 + 0.167) / 2, 3)
    assert r["DAP-LED quality"]["helps_at"] == ["-8 EV", "-7 EV", "-6 EV"]
    assert route(0.1, 0.1, 0.1, 0.1)["DAP-LED quality"]["threshold"] == round(0.167 * 1.1, 3)  # everywhere
    assert route(0.1, 0.1, 0.1, 0.0)["DAP-LED quality"]["threshold"] == 0.0   # not at the darkest: never
    # a gain at -6 EV with a loss at -7 EV between does not count: every darker level must help
    assert route(-0.1, 0.1, 0.0, 0.1)["DAP-LED quality"]["threshold"] == round((0.04 + 0.073) / 2, 3)
    assert routing_thresholds({"levels": {"-7 EV": _level(0.07, {"DAP-LED quality": 0.1})}}) == {}


def test_jobs_split_the_conditions_over_processes_and_merge_them_into_one_report(tmp_path, capsys):
    from dap_led_ros.cli.perception_bench import _without

    assert _without(["-v", "perception-bench", "--levels", "1", "2", "--out-dir=x", "--jobs", "2", "--seed", "3"],
                    {"--levels", "--out-dir", "--jobs"}) == ["-v", "perception-bench", "--seed", "3"]
    media = tmp_path / "media"
    (media / "photos").mkdir(parents=True)
    cv2.imwrite(str(media / "photos" / "s__x.png"), _scene(0)[..., ::-1])
    out = tmp_path / "out"
    common = ["--media", str(media), "--restoration", "none", "--bootstrap", "10", "--sheet-frames", "0"]
    assert main(["perception-bench", "--out-dir", str(out), "--levels", "4", "0", "5", "--jobs", "2",
                 "--threads", "2", *common]) == 0
    merged = json.loads((out / "perception_bench.json").read_text())
    assert list(merged["levels"]) == ["-5 EV", "-6 EV, read noise 12 e-", "-6 EV, defocus 2 px"]
    assert sorted(p.name for p in (out / "parts").iterdir()) == ["levels_0", "levels_4_5"]
    assert all("--threads 1" in c for c in merged["command"]) and "--jobs 2" in merged["jobs_command"]
    # the same conditions in one process give the same figures
    single = tmp_path / "single"
    assert main(["perception-bench", "--out-dir", str(single), "--levels", "0", "4", "5", "--threads", "1",
                 *common]) == 0
    alone = json.loads((single / "perception_bench.json").read_text())
    assert merged["levels"] == alone["levels"]
    capsys.readouterr()
    assert main(["perception-bench", "--out-dir", str(out), "--jobs", "0", *common]) == 2
    assert "--jobs must be >= 1" in capsys.readouterr().err
