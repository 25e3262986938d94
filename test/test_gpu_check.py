"""scripts/gpu_check.sh: the prepared GPU check runs its CPU-sized path here and writes its JSON,
every GPU path it cannot run recorded as skipped with the reason."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_script_syntax_and_smoke_run(tmp_path: Path) -> None:
    script = ROOT / "scripts" / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    done = subprocess.run([str(script), str(tmp_path / "out")], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "GPU_CHECK_SMOKE": "1"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    rows = report["models"]["realtime"]["paths"]
    assert {"torch-cuda-fp32", "torch-cuda-fp16", "onnxruntime-cuda-fp32", "onnxruntime-cuda-fp16",
            "tensorrt-fp16-strong", "tensorrt-fp16-weak"} <= set(rows)
    cpu16 = rows["onnxruntime-cpu-fp16"]
    assert cpu16["status"] == "ok" and cpu16["sizes"]["64x48"]["psnr_db_vs_cpu_fp32"] >= 40.0
    assert all(r["status"] in ("ok", "skipped") and (r["status"] == "ok" or r["reason"]) for r in rows.values())
    assert report["versions"]["device_auto"] in ("cpu", "cuda")
