"""`dap-led average-weights` and `dap-led ship-check`: the model soup and the shipping rule."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from dap_led_ros.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from dap_led_ros.model import ModelConfig, build_model
from dap_led_ros.training.ship_check import compare_reports, verdict
from dap_led_ros.training.weight_average import average_checkpoints, joint_campaign, write_average

from conftest import TEST_MODEL_OVERRIDES


def _checkpoint(path: Path, seed: int, runs: list[dict], **overrides) -> Path:
    torch.manual_seed(seed)
    cfg = ModelConfig.from_variant("tiny", **{**TEST_MODEL_OVERRIDES, **overrides})
    steps = sum(r["steps"] for r in runs)
    extra = {"campaign": {"cumulative_steps": steps, "cumulative_hours": sum(r["hours"] for r in runs), "runs": runs}}
    return save_checkpoint(build_model(cfg), cfg, path, extra)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dap_led_ros.cli", *args], capture_output=True, text=True, timeout=300)


BASE = {"run": "base", "steps": 100, "hours": 1.0, "threads": 1, "device": "cpu"}
FT_A = {"run": "ft_a", "steps": 20, "hours": 0.5, "threads": 1, "device": "cpu"}
FT_B = {"run": "ft_b", "steps": 30, "hours": 0.25, "threads": 1, "device": "cpu"}


def test_the_average_is_the_weighted_mean_of_every_parameter_and_runs_count_once(tmp_path):
    a = _checkpoint(tmp_path / "a", 0, [BASE, FT_A])
    b = _checkpoint(tmp_path / "b", 1, [BASE, FT_B])
    model, _, extra = average_checkpoints([a, b], [3, 1])
    sa, sb = load_file(str(a)), load_file(str(b))
    for k, v in model.state_dict().items():
        if v.is_floating_point():
            torch.testing.assert_close(v, 0.75 * sa[k] + 0.25 * sb[k], rtol=1e-5, atol=1e-6)
    assert extra["average"]["weights"] == [0.75, 0.25]
    # the shared base run is counted once: 100 + 20 + 30 steps, 1.75 h
    assert extra["campaign"]["cumulative_steps"] == 150
    assert extra["campaign"]["cumulative_hours"] == pytest.approx(1.75)
    assert [r["run"] for r in extra["campaign"]["runs"]] == ["base", "ft_a", "ft_b"]


def test_the_written_average_loads_and_restores(tmp_path):
    a = _checkpoint(tmp_path / "a", 0, [BASE])
    b = _checkpoint(tmp_path / "b", 1, [BASE, FT_B])
    out = write_average([a, b], tmp_path / "soup")
    model, _, extra = load_checkpoint(out)
    with torch.no_grad():
        y = model(torch.rand(1, 3, 64, 64))
    assert y.shape == (1, 3, 64, 64) and torch.isfinite(y).all()
    assert yaml.safe_load(out.with_suffix(".yaml").read_text())["extra"]["campaign"]["cumulative_steps"] == 130


def test_averaging_refuses_other_networks_bad_weights_and_overwriting_an_ingredient(tmp_path):
    a = _checkpoint(tmp_path / "a", 0, [BASE])
    b = _checkpoint(tmp_path / "b", 1, [BASE])
    other = _checkpoint(tmp_path / "other", 2, [BASE], use_prior=False)
    with pytest.raises(CheckpointError, match="another network"):
        average_checkpoints([a, other])
    with pytest.raises(CheckpointError, match="weights"):
        average_checkpoints([a, b], [1.0])
    with pytest.raises(CheckpointError, match="at least two"):
        average_checkpoints([a])
    before = a.read_bytes()
    r = _cli("average-weights", str(a), str(b), "--out", str(a))
    assert r.returncode == 2 and "one of the checkpoints averaged" in r.stderr
    assert a.read_bytes() == before
    r = _cli("average-weights", str(a), str(b), "--weights", "1", "-1", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "weights must be" in r.stderr and not (tmp_path / "x.safetensors").exists()


def test_joint_campaign_without_run_lists_keeps_the_largest_record():
    rec = joint_campaign([{"step": 7}, {"campaign": {"cumulative_steps": 50, "cumulative_hours": 2.0, "runs": []}}])
    assert rec["cumulative_steps"] == 50 and rec["cumulative_hours"] == 2.0


def _report(psnr: float, well: float, noise: float, sharp: float) -> dict:
    row = {"psnr": psnr, "psnr_level_fitted": psnr + 1, "ssim": 0.5}
    return {"paired": {"Synthetic validation set (640x400, seed 1234)": {"identity": {"psnr": 9.0}, "DAP-LED": row},
                       "only here (seed 1)": {"DAP-LED": row}},
            "well_exposed": {"rows": {"DAP-LED": {"psnr": well}}},
            "real": {"figures": {"DAP-LED": {"relative_noise": noise, "sharpness": sharp}}}}


def test_ship_check_needs_every_shared_figure_at_least_as_good(tmp_path):
    base = _report(20.0, 50.0, 0.009, 0.040)
    base["paired"].pop("only here (seed 1)")  # a set one report lacks is not compared
    better = _report(20.1, 55.0, 0.008, 0.041)
    rows = compare_reports(better, base)
    assert len(rows) == 3 + 1 + 2
    assert verdict(rows) == (True, [])
    noisier = _report(20.1, 55.0, 0.010, 0.041)  # relative noise: lower is better
    ok, short = verdict(compare_reports(noisier, base))
    assert not ok and [(r.where, r.figure) for r in short] == [("real night frames", "relative noise")]
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "eval.json").write_text(json.dumps(_report(19.99, 55.0, 0.008, 0.041)))
    (tmp_path / "b.json").write_text(json.dumps(base))
    r = _cli("ship-check", str(tmp_path / "c"), str(tmp_path / "b.json"))
    assert r.returncode == 1 and "do not ship" in r.stdout and "Synthetic validation set: PSNR (dB) -0.0100" in r.stdout
    r = _cli("ship-check", str(tmp_path / "c"), str(tmp_path / "b.json"), "--tolerance", "0.02")
    assert r.returncode == 0 and "ship: at least as good on all 6 figures" in r.stdout
    (tmp_path / "bad.json").write_text("{not json")
    r = _cli("ship-check", str(tmp_path / "c"), str(tmp_path / "bad.json"))
    assert r.returncode == 2 and "cannot read the eval report" in r.stderr
