"""Training: exact resume, best checkpoint, torchrun (gloo) on the CPU, config errors."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from dap_led_ros.checkpoint import load_checkpoint
from dap_led_ros.training.config import OptimConfig, TrainConfig
from dap_led_ros.training.state import STATE_FILE, load_state
from dap_led_ros.training.train import lr_factor, train

torch.set_num_threads(1)
VENV_BIN = Path(sys.executable).parent

# A small but complete setup: the tiny network with a two-grid CLIP prior, 32 px crops.
TINY = {
    "model": {"variant": "tiny", "prior": {"grids": [1, 2]}},
    "data": {"crop": 32, "epoch_length": 6, "workers": 0, "val_size": [32, 48], "val_count": 1},
    "optim": {"warmup_steps": 1},
    "steps": 4,
    "batch_size": 2,
    "val_every": 2,
    "save_every": 1,
    "log_every": 1,
    "threads": 1,
}


def _cfg(**overrides) -> TrainConfig:
    return TrainConfig.from_dict({**TINY, **overrides})


def _log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def test_resume_matches_one_uninterrupted_run(tmp_path):
    cfg = _cfg()  # 4 steps over epochs of 3 batches: the resume crosses an epoch boundary
    full = train(cfg, tmp_path / "full", progress=False)
    first = train(cfg, tmp_path / "split", stop_after=2, progress=False)
    assert first["step"] == 2 and load_state(tmp_path / "split" / STATE_FILE)["step"] == 2
    second = train(cfg, tmp_path / "split", resume=tmp_path / "split" / STATE_FILE, progress=False)
    assert second["step"] == full["step"] == 4
    assert second["total"] == pytest.approx(full["total"], rel=1e-4, abs=1e-6)
    train_rows = [r for r in _log(tmp_path / "split") if "total" in r]
    assert [r["step"] for r in train_rows] == [1, 2, 3, 4]
    a, _, _ = load_checkpoint(tmp_path / "full" / "last")
    b, _, _ = load_checkpoint(tmp_path / "split" / "last")
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(pa, pb, rtol=1e-4, atol=1e-5, msg=name)


def test_best_checkpoint_is_saved_with_its_scores_and_loads(tmp_path):
    train(_cfg(steps=2), tmp_path, progress=False)
    val_rows = [r for r in _log(tmp_path) if "val_psnr" in r]
    assert [r["step"] for r in val_rows] == [2]
    model, cfg, extra = load_checkpoint(tmp_path / "best")
    assert cfg.prior.grids == (1, 2) and extra["step"] == 2
    assert extra["val_psnr"] == pytest.approx(val_rows[0]["val_psnr"])
    assert extra["train_config"]["batch_size"] == 2 and "synthetic" in extra["data"]
    with torch.no_grad():
        y = model(torch.rand(1, 3, 40, 56))
    assert y.shape == (1, 3, 40, 56)


def test_state_file_loads_with_weights_only(tmp_path):
    train(_cfg(steps=1), tmp_path, progress=False)
    state = torch.load(tmp_path / STATE_FILE, map_location="cpu", weights_only=True)
    assert state["step"] == 1 and isinstance(state["rng"]["torch"], torch.Tensor)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_cpu_processes_gloo(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({**TINY, "steps": 3, "val_every": 3, "save_every": 3}))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [str(VENV_BIN / "torchrun"), "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", "-m", "dap_led_ros.cli", "train",
           "--config", str(cfg), "--out", str(tmp_path / "run"), "--no-progress"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    rows = _log(tmp_path / "run")
    assert [r["step"] for r in rows if "total" in r] == [1, 2, 3]
    assert any("val_psnr" in r for r in rows)
    assert load_state(tmp_path / "run" / STATE_FILE)["step"] == 3
    load_checkpoint(tmp_path / "run" / "best")


def test_config_errors_are_specific(tmp_path):
    with pytest.raises(ValueError, match="unknown train config keys"):
        TrainConfig.from_dict({"stepz": 3})
    with pytest.raises(ValueError, match="data.crop"):
        TrainConfig.from_dict({"data": {"crop": 30}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: {lr: 0.001, momentum: 0.9}\n")
    proc = subprocess.run([str(VENV_BIN / "dap-led"), "train", "--config", str(bad), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "unknown train config.optim keys ['momentum']" in proc.stderr


def test_the_shipped_training_configs_load():
    root = Path(__file__).resolve().parents[1] / "config"
    a, b = TrainConfig.load(root / "train_tiny.yaml"), TrainConfig.load(root / "train_tiny_noprior.yaml")
    assert a.model_config().use_prior and not b.model_config().use_prior
    a.model["use_prior"] = False
    assert a.to_dict() == b.to_dict()  # the ablation differs in the prior only


def test_lr_schedule_warms_up_then_decays_to_the_floor():
    cfg = OptimConfig(warmup_steps=10, min_lr_ratio=0.1)
    assert lr_factor(0, cfg, 100) == pytest.approx(0.1)
    assert lr_factor(9, cfg, 100) == pytest.approx(1.0)
    assert lr_factor(55, cfg, 100) == pytest.approx(0.55)
    assert lr_factor(100, cfg, 100) == pytest.approx(0.1)


def test_data_worker_processes_across_epochs(tmp_path):
    # One worker process per epoch (spawned): 3 steps over epochs of 2 batches.
    cfg = _cfg(steps=3, data={**TINY["data"], "workers": 1, "epoch_length": 4}, val_every=3, save_every=3)
    result = train(cfg, tmp_path, progress=False)
    assert result["step"] == 3 and [r["epoch"] for r in _log(tmp_path) if "total" in r] == [0, 0, 1]


def test_init_from_loads_weights_and_rejects_another_network(tmp_path):
    train(_cfg(steps=1), tmp_path / "a", progress=False)
    result = train(_cfg(steps=1, init_from=str(tmp_path / "a" / "last.safetensors")), tmp_path / "b", progress=False)
    assert result["step"] == 1
    with pytest.raises(ValueError, match="different network"):
        train(_cfg(steps=1, model={"variant": "tiny", "use_prior": False},
                   init_from=str(tmp_path / "a" / "last.safetensors")), tmp_path / "c", progress=False)
    # Adding the residual gate keeps every trained weight and starts a fresh gate; removing it is refused.
    gated = {**TINY["model"], "residual_gate": True}
    train(_cfg(steps=1, model=gated, init_from=str(tmp_path / "a" / "last.safetensors")), tmp_path / "d",
          progress=False)
    with pytest.raises(ValueError, match="different network"):
        train(_cfg(steps=1, init_from=str(tmp_path / "d" / "last.safetensors")), tmp_path / "e", progress=False)
    # A gated network continues from a gated one with every weight, the gate's included.
    train(_cfg(steps=1, model=gated, init_from=str(tmp_path / "d" / "last.safetensors")), tmp_path / "f",
          progress=False)
    # The real-time variant (stem unshuffle 4) starts from the quality one: the body carried over
    # unchanged, the stem and output convs refolded.
    rt = {**gated, "variant": "tiny-rt"}
    train(_cfg(steps=1, model=rt, init_from=str(tmp_path / "d" / "last.safetensors"),
               optim={"warmup_steps": 0, "lr": 1e-12}, ema_decay=0.0), tmp_path / "g", progress=False)
    src, _, _ = load_checkpoint(tmp_path / "d" / "last")
    dst, dst_cfg, _ = load_checkpoint(tmp_path / "g" / "last")
    assert dst_cfg.stem_unshuffle == 4 and dst_cfg.variant == "tiny-rt"
    for name, p in src.state_dict().items():
        if name in ("embed.1.weight", "out.0.weight"):
            assert dst.state_dict()[name].shape[0 if name.startswith("out") else 1] == 48
        else:
            torch.testing.assert_close(dst.state_dict()[name], p, msg=name)
    # A grown network (noise conditioning, wide context, more latent blocks) keeps every trained
    # weight (the added parts start as the identity; test_model_growth.py checks the output).
    grown = {**gated, "noise_conditioning": True, "context_kernel": 5, "blocks": [1, 1, 1, 3]}
    train(_cfg(steps=1, model=grown, init_from=str(tmp_path / "d" / "last.safetensors"),
               optim={"warmup_steps": 0, "lr": 1e-12}, ema_decay=0.0), tmp_path / "h", progress=False)
    dst, dst_cfg, _ = load_checkpoint(tmp_path / "h" / "last")
    assert dst_cfg.noise_conditioning and dst_cfg.context_kernel == 5 and dst_cfg.blocks == (1, 1, 1, 3)
    for name, p in src.state_dict().items():
        torch.testing.assert_close(dst.state_dict()[name], p, msg=name)
    with pytest.raises(ValueError, match="different network.*noise conditioning"):
        train(_cfg(steps=1, model=gated, init_from=str(tmp_path / "h" / "last.safetensors")), tmp_path / "i",
              progress=False)


def test_ema_weights_are_validated_saved_and_resumed_exactly(tmp_path):
    cfg = _cfg(ema_decay=0.5)
    train(cfg, tmp_path / "full", progress=False)
    train(cfg, tmp_path / "split", stop_after=2, progress=False)
    train(cfg, tmp_path / "split", resume=tmp_path / "split" / STATE_FILE, progress=False)
    a, _, _ = load_checkpoint(tmp_path / "full" / "last")
    b, _, _ = load_checkpoint(tmp_path / "split" / "last")
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(pa, pb, rtol=1e-4, atol=1e-5, msg=name)
    # `last` holds the average, not the raw weights the optimiser trained.
    state = load_state(tmp_path / "full" / STATE_FILE)
    raw = state["model"]["embed.1.weight"]
    assert "ema" in state and not torch.allclose(a.state_dict()["embed.1.weight"], raw)
    with pytest.raises(ValueError, match="no EMA weights"):
        train(cfg, tmp_path / "noema", resume=_plain_state(tmp_path), progress=False)
    with pytest.raises(ValueError, match="ema_decay"):
        _cfg(ema_decay=1.0)


def _plain_state(tmp_path: Path) -> Path:
    train(_cfg(steps=1), tmp_path / "plain", progress=False)
    return tmp_path / "plain" / STATE_FILE


@pytest.mark.parametrize("name, cycle, crop", [("finetune", 2, 256), ("finetune_ssim", 3, 256),
                                               ("finetune_384", 3, 384)])
def test_the_finetune_configs_differ_in_the_prior_only(name, cycle, crop):
    root = Path(__file__).resolve().parents[1] / "config"
    a = TrainConfig.load(root / f"train_tiny_{name}.yaml")
    b = TrainConfig.load(root / f"train_tiny_noprior_{name}.yaml")
    assert a.ema_decay > 0 and a.data.crop == crop
    assert (a.init_from, b.init_from) == (f"runs/tiny_s{cycle}/last.safetensors",
                                          f"runs/tiny_noprior_s{cycle}/last.safetensors")
    a.model["use_prior"] = False
    a.init_from = b.init_from
    assert a.to_dict() == b.to_dict()


def test_a_campaign_adds_each_runs_steps_and_hours_to_its_weights_record(tmp_path):
    train(_cfg(steps=2), tmp_path / "a", progress=False)
    first = yaml.safe_load((tmp_path / "a" / "last.yaml").read_text())["extra"]["campaign"]
    assert first["cumulative_steps"] == 2 and first["cumulative_hours"] >= 0
    assert [r["steps"] for r in first["runs"]] == [2]
    # Continued from `a` for 3 steps, stopped after 1 and resumed: 2 + 3 steps, hours kept across the resume.
    cfg = _cfg(steps=3, init_from=str(tmp_path / "a" / "last.safetensors"))
    train(cfg, tmp_path / "b", stop_after=1, progress=False)
    seconds = load_state(tmp_path / "b" / STATE_FILE)["seconds"]
    assert seconds > 0
    train(cfg, tmp_path / "b", resume=tmp_path / "b" / STATE_FILE, progress=False)
    rec = yaml.safe_load((tmp_path / "b" / "last.yaml").read_text())["extra"]["campaign"]
    assert rec["cumulative_steps"] == 5
    assert [r["run"] for r in rec["runs"]] == ["a", "b"] and rec["runs"][1]["steps"] == 3
    assert load_state(tmp_path / "b" / STATE_FILE)["seconds"] > seconds
    assert rec["cumulative_hours"] >= first["cumulative_hours"]


@pytest.mark.parametrize("clock", ["wall", "cpu"])
def test_a_time_budget_ends_the_run_validated_and_saved(tmp_path, clock):
    result = train(_cfg(steps=50, val_every=100, save_every=100, time_budget_min=1e-6, time_budget_clock=clock),
                   tmp_path, progress=False)
    assert result["step"] == 1
    assert load_state(tmp_path / STATE_FILE)["step"] == 1
    assert [r["step"] for r in _log(tmp_path) if "val_psnr" in r] == [1]
    assert load_state(tmp_path / STATE_FILE)["cpu_seconds"] > 0
    with pytest.raises(ValueError, match="time_budget_min"):
        _cfg(time_budget_min=-1)
    with pytest.raises(ValueError, match="time_budget_clock"):
        _cfg(time_budget_clock="gpu")


def _fake_debian_pool(root: Path, n: int = 12) -> Path:
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    for i in range(n):
        img = cv2.GaussianBlur((rng.random((300, 400, 3)) * 255).astype(np.uint8), (0, 0), 3)
        (root / "fakepkg").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "fakepkg" / f"scene{i:02d}.png"), img)
    return root


def test_validation_covers_the_camera_set_and_the_well_exposed_frames(tmp_path, monkeypatch):
    monkeypatch.setenv("DAP_LED_PHOTOS", str(_fake_debian_pool(tmp_path / "photos")))
    train(_cfg(steps=2, data={**TINY["data"], "camera_share": 0.5, "val2_count": 2}),
          tmp_path / "run", progress=False)
    row = [r for r in _log(tmp_path / "run") if "val_psnr" in r][-1]
    for key in ("val_psnr", "val2_psnr", "well_psnr", "val2_ssim", "well_ssim"):
        assert key in row and row[key] > 0, key
    assert row["score"] == pytest.approx((row["val_psnr"] + row["val2_psnr"]) / 2)
    desc = yaml.safe_load((tmp_path / "run" / "last.yaml").read_text())["extra"]["data"]
    assert "from Debian packages" in desc and "50% RAW-domain camera model" in desc


def test_the_gpu_script_runs_its_whole_path_on_a_few_cpu_steps(tmp_path):
    cfg = TrainConfig.load(Path(__file__).resolve().parents[1] / "config" / "train_small_gpu.yaml")
    assert cfg.device == "cuda" and cfg.model_config().variant == "small" and 0 < cfg.time_budget_min <= 9
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "GPU_TRAIN_SMOKE": "1", "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([str(root / "scripts" / "gpu_train.sh"), str(tmp_path / "out")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (tmp_path / "out" / "train" / "best.safetensors").is_file()
    report = (tmp_path / "out" / "eval" / "evaluation.md").read_text()
    assert "Synthetic validation set" in report and "Well-exposed" in report
    assert "training wall time" in proc.stdout


def test_validation_pairs_do_not_follow_the_training_degradation_overrides():
    from dap_led_ros.training.loaders import ValidationSet

    plain = ValidationSet(_cfg())
    tuned = ValidationSet(_cfg(data={**TINY["data"], "synthesis": {"p_identity": 0.9},
                                     "camera": {"p_mild": 0.5, "mild_target": "input"}, "camera_share": 1.0}))
    for (a_low, a_high), (b_low, b_high) in zip(plain.sets["val"], tuned.sets["val"]):
        assert torch.equal(a_low, b_low) and torch.equal(a_high, b_high)


def test_resume_or_start_continues_the_same_command(tmp_path):
    from dap_led_ros.cli import main

    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump({**TINY, "data": {**TINY["data"], "cross_validation": False}}))
    args = ["train", "--config", str(cfg_path), "--out", str(tmp_path / "run"), "--resume-or-start",
            "--stop-after", "2", "--no-progress"]
    assert main(args) == 0 and main(args) == 0  # the second call resumes from step 2
    log = _log(tmp_path / "run")
    assert [r["step"] for r in log if r.get("event") == "resume"] == [2]
    assert max(r["step"] for r in log) == 4


def test_carried_lr_ratio_zero_trains_only_what_growth_added(tmp_path):
    train(_cfg(steps=1), tmp_path / "a", progress=False)
    grown = {**TINY["model"], "noise_conditioning": True, "context_kernel": 3, "blocks": [1, 1, 1, 3]}
    src, _, _ = load_checkpoint(tmp_path / "a" / "last")
    train(_cfg(steps=3, model=grown, init_from=str(tmp_path / "a" / "last.safetensors"),
               optim={"warmup_steps": 0, "lr": 1e-2, "carried_lr_ratio": 0.0}, ema_decay=0.0),
          tmp_path / "b", progress=False)
    dst, _, _ = load_checkpoint(tmp_path / "b" / "last")
    before = src.state_dict()
    for name, p in dst.state_dict().items():
        if name in before:
            torch.testing.assert_close(p, before[name], msg=name)
    moved = [n for n, p in dst.state_dict().items() if n.startswith(("noise_embed.", "context.")) and p.abs().sum() > 0]
    assert moved, "the added parts did not train"
    with pytest.raises(ValueError, match="carried_lr_ratio"):
        _cfg(optim={"carried_lr_ratio": 1.5}).validate()


def test_every_training_config_in_the_package_validates():
    """Each config/train_*.yaml parses and validates; an init_from outside runs/ (the scratch folder of
    the early cycles' chains, run by run) is a checkpoint in the repository."""
    import yaml

    root = Path(__file__).resolve().parents[1]
    configs = sorted((root / "config").glob("train_*.yaml"))
    assert len(configs) > 10
    for path in configs:
        cfg = TrainConfig.from_dict(yaml.safe_load(path.read_text()))
        cfg.validate()
        if cfg.init_from and not cfg.init_from.startswith("runs/"):
            assert (root / cfg.init_from).is_file(), f"{path.name}: init_from {cfg.init_from} is not in the repository"
