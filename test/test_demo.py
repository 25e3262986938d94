"""`dap-led demo`: sample bag -> enhanced bag -> video, contact sheets, detections, real frames."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from dap_led_ros.bag import demo
from dap_led_ros.bag.bag_io import open_reader
from dap_led_ros.cli import main as cli_main


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture
def night_photos(tmp_path):
    folder = tmp_path / "real"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.jpg"):
        assert cv2.imwrite(str(folder / name), rng.integers(0, 40, (40, 56, 3), dtype=np.uint8))
    (folder / "broken.png").write_bytes(b"not an image")
    return folder


def _run(out, checkpoint, night_photos, *extra: str) -> int:
    return cli_main(["demo", "--out", str(out), "--model", str(checkpoint), "--backend", "torch", "--threads", "1",
                     "--frames", "5", "--size", "64x40", "--sheet-frames", "3", "--real-night", str(night_photos),
                     *extra])


def test_demo_end_to_end(tmp_path, tiny_checkpoint, night_photos):
    out = tmp_path / "demo"
    assert _run(out, tiny_checkpoint, night_photos) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["numbers"]["frames"] == 5 and summary["numbers"]["failed_frames"] == 0
    reader = open_reader(out / "night_drive_enhanced")
    try:
        assert {"/camera/image_raw", "/camera/enhanced/image", "/camera/enhanced/camera_info", "/imu"} <= \
            {t.name for t in reader.topics}
    finally:
        reader.close()
    video = cv2.VideoCapture(summary["outputs"]["video"])
    assert video.get(cv2.CAP_PROP_FRAME_COUNT) == 5 and video.get(cv2.CAP_PROP_FRAME_WIDTH) == 128
    video.release()
    assert cv2.imread(summary["outputs"]["contact_sheet"]).shape[0] > 3 * 100  # three rows of frames
    # the shipped detector loads on any install: nothing skipped but the broken photo
    assert cv2.imread(summary["outputs"]["detections"]) is not None
    assert set(summary["numbers"]["real_night_objects"]) == {"input", "restored"}
    assert sorted(p.name for p in (out / "real-night").glob("*.png")) == \
        ["a.png", "b.png", "contact_sheet.png", "detections.png"]
    assert [n for n in summary["notes"] if "skipped" in n] == [n for n in summary["notes"] if "broken.png" in n]
    assert any("broken.png" in n for n in summary["notes"])


def test_real_night_frames_default_to_the_folder_beside_the_checkout(tmp_path, monkeypatch):
    from dap_led_ros.workspace import CHECKOUT

    monkeypatch.delenv(demo.REAL_NIGHT_ENV, raising=False)
    beside = CHECKOUT.parent / "shared" / "data" / "real-night"
    assert demo._real_night_dir(None) == (beside if beside.is_dir() else None)
    assert demo._real_night_dir(tmp_path) == tmp_path
    monkeypatch.setenv(demo.REAL_NIGHT_ENV, str(tmp_path / "x"))
    assert demo._real_night_dir(None) == tmp_path / "x"


def test_demo_falls_back_to_animated_png_and_reuses_a_given_bag(tmp_path, tiny_checkpoint, night_photos, monkeypatch):
    first = tmp_path / "first"
    assert _run(first, tiny_checkpoint, night_photos, "--no-detection") == 0
    monkeypatch.setattr(demo, "VIDEO_FOURCC", "\0\0\0\0")  # no such encoder
    out = tmp_path / "second"
    assert _run(out, tiny_checkpoint, tmp_path / "absent", "--bag", str(first / "night_drive"), "--no-detection") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["outputs"]["input_bag"] == str(first / "night_drive")
    assert not (out / "night_drive").exists()
    assert summary["outputs"]["video"].endswith(".png")
    from PIL import Image

    with Image.open(summary["outputs"]["video"]) as apng:
        assert apng.n_frames == 5
    assert any("does not exist" in n for n in summary["notes"])
    assert _run(tmp_path / "third", tiny_checkpoint, night_photos, "--bag", str(tmp_path / "nothing")) == 2
