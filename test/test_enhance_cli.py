"""`dap-led enhance` on files and folders, and the tiling of large frames."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dap_led_ros.checkpoint import save_checkpoint
from dap_led_ros.model import ModelConfig, build_model
from dap_led_ros.runtime.tiling import blend_weights, crop_upsampled, plan_tiles

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    cfg = ModelConfig.from_variant("tiny")
    return save_checkpoint(build_model(cfg), cfg, tmp_path_factory.mktemp("ckpt") / "tiny")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dap_led_ros.cli", *args], capture_output=True, text=True,
                          timeout=300, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})


def test_folder_of_rgb_gray_rgba_odd_sizes(tmp_path: Path, tiny_ckpt: Path) -> None:
    rng = np.random.default_rng(0)
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    rgb = rng.integers(0, 60, (333, 517, 3), dtype=np.uint8)
    gray = rng.integers(0, 60, (71, 45), dtype=np.uint8)
    rgba = rng.integers(0, 60, (37, 53, 4), dtype=np.uint8)
    cv2.imwrite(str(src / "rgb.png"), rgb)
    cv2.imwrite(str(src / "sub" / "gray.png"), gray)
    cv2.imwrite(str(src / "rgba.png"), rgba)
    (src / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    r = _run("enhance", str(src), str(out), "--model", str(tiny_ckpt), "--backend", "torch",
             "--contact-sheet", str(tmp_path / "sheet.png"))
    # The broken file is reported and the exit status says so; the good ones are all written.
    assert r.returncode == 1, r.stderr
    assert "broken.png" in r.stderr and "not a readable image" in r.stderr
    assert cv2.imread(str(out / "rgb.png"), cv2.IMREAD_UNCHANGED).shape == (333, 517, 3)
    assert cv2.imread(str(out / "sub" / "gray.png"), cv2.IMREAD_UNCHANGED).shape == (71, 45)
    got = cv2.imread(str(out / "rgba.png"), cv2.IMREAD_UNCHANGED)
    assert got.shape == (37, 53, 4)
    np.testing.assert_array_equal(got[:, :, 3], rgba[:, :, 3])  # alpha passes through
    assert not (out / "broken.png").exists()
    assert cv2.imread(str(tmp_path / "sheet.png")) is not None


def test_single_file_and_clear_errors(tmp_path: Path, tiny_ckpt: Path) -> None:
    img = tmp_path / "a.jpg"
    cv2.imwrite(str(img), np.full((20, 30, 3), 10, np.uint8))
    r = _run("enhance", str(img), str(tmp_path / "b.png"), "--model", str(tiny_ckpt), "--backend", "torch")
    assert r.returncode == 0, r.stderr
    assert cv2.imread(str(tmp_path / "b.png")).shape == (20, 30, 3)
    r = _run("enhance", str(tmp_path / "missing"), str(tmp_path / "o"))
    assert r.returncode == 2 and "does not exist" in r.stderr
    r = _run("enhance", str(img), str(tmp_path / "o.png"), "--model", str(tmp_path / "nope.safetensors"))
    assert r.returncode == 2 and "checkpoint weights not found" in r.stderr


def test_tile_plan_covers_frame_with_overlap() -> None:
    tiles = plan_tiles(1000, 1500, 512, 64)
    cover = np.zeros((1000, 1500), int)
    for t in tiles:
        assert t.y1 - t.y0 <= 512 and t.x1 - t.x0 <= 512
        cover[t.y0:t.y1, t.x0:t.x1] += 1
    assert cover.min() >= 1
    assert plan_tiles(100, 80, 128, 16) == [plan_tiles(100, 80, 128, 16)[0]]
    w = blend_weights(64, 64, 16)
    assert w.min() > 0 and w[32, 32] == 1
    with pytest.raises(ValueError):
        plan_tiles(10, 10, 8, 8)


def test_tiles_see_the_whole_frame_prior_exactly() -> None:
    """A tile's heatmaps are the crop of the whole frame's heatmaps upsampled to the frame."""
    maps = np.random.default_rng(2).random((1, 4, 4, 4)).astype(np.float32)
    full = torch.nn.functional.interpolate(torch.from_numpy(maps), size=(150, 230), mode="bilinear",
                                           align_corners=False).numpy()
    for t in plan_tiles(150, 230, 96, 32):
        np.testing.assert_allclose(crop_upsampled(maps, (150, 230), t), full[..., t.y0:t.y1, t.x0:t.x1],
                                   atol=1e-5)


def test_help_documents_force_and_the_exit_status() -> None:
    from dap_led_ros.cli import build_parser

    for command in ("enhance", "export", "eval", "bench"):
        text = build_parser([command])._subparsers._group_actions[0].choices[command].format_help()
        assert "exit status: 0" in " ".join(text.split()), command
    enhance_help = " ".join(build_parser(["enhance"])._subparsers._group_actions[0].choices["enhance"]
                            .format_help().split())
    assert "--force" in enhance_help and "1 some images failed" in enhance_help


def test_temporal_folder_fuses_consecutive_frames(tmp_path: Path, tiny_ckpt: Path) -> None:
    rng = np.random.default_rng(3)
    scene = cv2.GaussianBlur(rng.integers(0, 80, (64, 96, 3), dtype=np.uint8), (0, 0), 3)
    src = tmp_path / "frames"
    src.mkdir()
    for i in range(4):  # one static scene, fresh noise per frame
        noisy = np.clip(scene.astype(int) + rng.integers(-12, 13, scene.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(src / f"f{i:03d}.png"), noisy)
    outs = {}
    for name, extra in (("stills", ()), ("video", ("--temporal",)), ("burst", ("--burst",))):
        r = _run("enhance", str(src), str(tmp_path / name) + "/", "--model", str(tiny_ckpt), "--backend", "torch",
                 *extra)
        assert r.returncode == 0, r.stderr
        outs[name] = [cv2.imread(str(tmp_path / name / f"f{i:03d}.png")).astype(float) for i in range(4)]
    np.testing.assert_array_equal(outs["stills"][0], outs["video"][0])  # the first frame stands alone
    np.testing.assert_array_equal(outs["stills"][0], outs["burst"][0])

    def change(frames):
        return np.mean([np.abs(a - b).mean() for a, b in zip(frames[1:], frames[:-1])])
    for name in ("video", "burst"):  # fused outputs, or outputs of merged inputs: steadier
        assert change(outs[name]) < 0.8 * change(outs["stills"]), (name, change(outs[name]), change(outs["stills"]))
