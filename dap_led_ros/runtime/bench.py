"""`dap-led bench`: latency, throughput and peak memory of every available backend per frame size."""
from __future__ import annotations

import logging
import os
import platform
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dap_led_ros.runtime.backends import Backend, BackendError, create_backend
from dap_led_ros.runtime.export import smooth_test_image

log = logging.getLogger(__name__)

DEFAULT_SIZES = ((480, 640), (720, 1280), (1080, 1920))  # (H, W)


@dataclass(frozen=True)
class Variant:
    """One backend configuration to measure."""

    label: str
    backend: str
    device: str
    options: dict[str, Any] = field(default_factory=dict)
    # Label of the variant this one's speed ratio is computed against.
    reference: str = "torch"


@dataclass
class Result:
    variant: str
    description: str
    size: str
    iters: int = 0
    min_ms: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    mean_ms: float | None = None
    fps: float | None = None
    peak_rss_mib: float | None = None
    cuda_peak_mib: float | None = None
    speedup_vs_reference: float | None = None
    reference: str = ""
    error: str | None = None


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def default_variants(threads: int) -> list[Variant]:
    """CPU variants always; GPU extras (torch FP16 + CUDA graphs, ORT CUDA, TensorRT) when a GPU exists."""
    cpu = {"threads": threads} if threads else {}
    variants = [Variant("torch", "torch", "cpu", cpu), Variant("onnxruntime", "onnxruntime", "cpu", cpu)]
    if _cuda_available():
        variants += [
            Variant("torch-cuda", "torch", "cuda", reference="torch-cuda"),
            Variant("torch-cuda-fp16-graphs", "torch", "cuda", {"fp16": True, "cuda_graphs": True},
                    reference="torch-cuda"),
            Variant("onnxruntime-cuda", "onnxruntime", "cuda", reference="torch-cuda"),
            Variant("tensorrt-fp16", "tensorrt", "cuda", reference="torch-cuda"),
        ]
    return variants


class PeakMemory:
    """Process peak RSS since the last `reset` (Linux clear_refs), and CUDA peak allocation via torch."""

    def __init__(self) -> None:
        self._resettable = Path("/proc/self/clear_refs").exists()

    def reset(self) -> None:
        if self._resettable:
            try:
                Path("/proc/self/clear_refs").write_text("5")
            except OSError:
                self._resettable = False
        if _cuda_available():
            import torch

            torch.cuda.reset_peak_memory_stats()

    def rss_peak_mib(self) -> float:
        if self._resettable:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
        # ru_maxrss: KiB on Linux, the lifetime peak (not resettable)
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    @staticmethod
    def cuda_peak_mib() -> float | None:
        if not _cuda_available():
            return None
        import torch

        return torch.cuda.max_memory_allocated() / 2**20


def infer_times_ms(backend: Backend, x: np.ndarray, iters: int) -> list[float]:
    """Wall time of `iters` calls of `backend.infer(x)`, one by one, in ms."""
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        backend.infer(x)
        times.append(1000.0 * (time.perf_counter() - t0))
    return times


def measure(backend: Backend, x: np.ndarray, iters: int, warmup: int, memory: PeakMemory) -> dict[str, float]:
    memory.reset()
    for _ in range(warmup):
        backend.infer(x)
    ms = np.array(infer_times_ms(backend, x, iters))
    return {"min_ms": float(ms.min()), "p50_ms": float(np.percentile(ms, 50)),
            "p95_ms": float(np.percentile(ms, 95)), "mean_ms": float(ms.mean()),
            "fps": float(1000.0 / ms.mean()) * x.shape[0],
            "peak_rss_mib": memory.rss_peak_mib(), "cuda_peak_mib": memory.cuda_peak_mib()}


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {"cpu": cpu, "logical_cpus": os.cpu_count(), "platform": platform.platform(),
                            "python": platform.python_version(), "load_avg_start": os.getloadavg(),
                            "niceness": os.nice(0), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    try:
        mem_kib = int(next(l for l in Path("/proc/meminfo").read_text().splitlines()
                           if l.startswith("MemTotal")).split()[1])
        info["memory_gib"] = round(mem_kib / 2**20, 1)
    except (OSError, StopIteration, ValueError):
        pass
    for mod in ("torch", "onnxruntime", "tensorrt"):
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            info[mod] = None
    if _cuda_available():
        import torch

        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def run_bench(variants: list[Variant], sizes: tuple[tuple[int, int], ...], model: str | None, iters: int,
              warmup: int, batch: int = 1, cache_dir: str | None = None) -> list[Result]:
    memory = PeakMemory()
    results: list[Result] = []
    for v in variants:
        opts = dict(v.options)
        if cache_dir and v.backend in ("onnxruntime", "tensorrt"):
            opts["cache_dir"] = cache_dir
        try:
            backend = create_backend(v.backend, model, v.device, **opts)
        except (BackendError, ImportError, OSError, RuntimeError, ValueError) as exc:
            log.warning("bench: %s unavailable: %s", v.label, exc)
            results += [Result(v.label, "", f"{w}x{h}", error=str(exc).splitlines()[0]) for h, w in sizes]
            continue
        desc = backend.describe()
        for h, w in sizes:
            x = smooth_test_image(batch, h, w)
            try:
                stats = measure(backend, x, iters, warmup, memory)
            except (BackendError, RuntimeError, MemoryError, ValueError) as exc:
                results.append(Result(v.label, desc, f"{w}x{h}", error=str(exc).splitlines()[0]))
                continue
            r = Result(v.label, desc, f"{w}x{h}", iters=iters, **stats)
            log.info("bench: %s %s: p50 %.1f ms, %.2f fps", v.label, r.size, r.p50_ms, r.fps)
            results.append(r)
        backend.close()
        del backend
    _add_ratios(results, {v.label: v.reference for v in variants})
    return results


def _add_ratios(results: list[Result], references: dict[str, str]) -> None:
    by_key = {(r.variant, r.size): r for r in results}
    for r in results:
        ref = by_key.get((references.get(r.variant, ""), r.size))
        r.reference = references.get(r.variant, "")
        if ref is not None and ref.p50_ms and r.p50_ms:
            r.speedup_vs_reference = ref.p50_ms / r.p50_ms


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def markdown_table(results: list[Result]) -> str:
    lines = ["| backend | size | p50 ms | p95 ms | min ms | fps | peak RSS MiB | CUDA peak MiB | speed-up (p50) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if r.error:
            lines.append(f"| {r.variant} | {r.size} | unavailable: {r.error[:80]} | | | | | | |")
            continue
        ratio = f"{r.speedup_vs_reference:.2f}x {r.reference}" if r.speedup_vs_reference else "-"
        lines.append(f"| {r.variant} | {r.size} | {_fmt(r.p50_ms, '.1f')} | {_fmt(r.p95_ms, '.1f')} | "
                     f"{_fmt(r.min_ms, '.1f')} | {_fmt(r.fps, '.2f')} | {_fmt(r.peak_rss_mib, '.0f')} | "
                     f"{_fmt(r.cuda_peak_mib, '.0f')} | {ratio} |")
    return "\n".join(lines)


def plot(results: list[Result], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in results if r.fps]
    variants = list(dict.fromkeys(r.variant for r in ok))
    sizes = list(dict.fromkeys(r.size for r in ok))
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(sizes) * max(1, len(variants)) / 2, 4))
    width = 0.8 / max(1, len(variants))
    for i, v in enumerate(variants):
        fps = [next((r.fps for r in ok if r.variant == v and r.size == s), 0.0) for s in sizes]
        ax.bar(np.arange(len(sizes)) + i * width, fps, width, label=v)
    ax.set_xticks(np.arange(len(sizes)) + width * (len(variants) - 1) / 2)
    ax.set_xticklabels(sizes)
    ax.set_ylabel("frames per second (batch 1)")
    ax.set_yscale("log")
    ax.set_title("DAP-LED inference throughput per backend")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
