"""The shipping rule, read off two `dap-led eval` reports: a candidate replaces the shipped model only
when it is at least as good on every figure both reports hold (each paired set's PSNR, level-fitted
PSNR and SSIM; well-exposed frames in -> out; the real night frames' relative noise, lower is
better, and sharpness)."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODEL_ROW = "DAP-LED"
PAIRED_FIGURES = (("psnr", "PSNR (dB)", +1), ("psnr_level_fitted", "PSNR level-fitted (dB)", +1),
                  ("ssim", "SSIM", +1))
REAL_FIGURES = (("relative_noise", "relative noise", -1), ("sharpness", "sharpness", +1))


class ReportError(ValueError):
    """An eval.json that cannot be read or holds no model row."""


@dataclass(frozen=True)
class Comparison:
    where: str
    figure: str
    candidate: float
    baseline: float
    sense: int  # +1: higher is better, -1: lower is better

    @property
    def short_where(self) -> str:
        """The set's name without its size and seed."""
        return self.where.split(" (")[0]

    @property
    def delta(self) -> float:
        return self.candidate - self.baseline

    def holds(self, tolerance: float = 0.0) -> bool:
        """At least as good, within `tolerance` (in the figure's own unit)."""
        if math.isinf(self.candidate) and math.isinf(self.baseline):
            return True
        return self.sense * self.delta >= -tolerance


def read_report(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / "eval.json"
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ReportError(f"cannot read the eval report {path}: {exc}") from exc
    if not isinstance(doc, dict) or not any(k in doc for k in ("paired", "well_exposed", "real")):
        raise ReportError(f"{path} is not a `dap-led eval` report (no paired, well_exposed or real section)")
    return doc


def compare_reports(candidate: dict[str, Any], baseline: dict[str, Any]) -> list[Comparison]:
    """Every figure of the model row both reports hold; sets only one report has are skipped."""
    rows: list[Comparison] = []
    cand_sets, base_sets = candidate.get("paired") or {}, baseline.get("paired") or {}
    for name, methods in cand_sets.items():
        c, b = (methods or {}).get(MODEL_ROW), (base_sets.get(name) or {}).get(MODEL_ROW)
        if not c or not b:
            continue
        for key, label, sense in PAIRED_FIGURES:
            if key in c and key in b:
                rows.append(Comparison(name, label, float(c[key]), float(b[key]), sense))
    c = ((candidate.get("well_exposed") or {}).get("rows") or {}).get(MODEL_ROW)
    b = ((baseline.get("well_exposed") or {}).get("rows") or {}).get(MODEL_ROW)
    if c and b:
        rows.append(Comparison("well-exposed frames", "PSNR in -> out (dB)", float(c["psnr"]), float(b["psnr"]), +1))
    c = ((candidate.get("real") or {}).get("figures") or {}).get(MODEL_ROW)
    b = ((baseline.get("real") or {}).get("figures") or {}).get(MODEL_ROW)
    if c and b:
        for key, label, sense in REAL_FIGURES:
            rows.append(Comparison("real night frames", label, float(c[key]), float(b[key]), sense))
    if not rows:
        raise ReportError("the two reports share no figure of the model row: were they made with the same sets?")
    return rows


def markdown_table(rows: list[Comparison], tolerance: float = 0.0) -> str:
    lines = ["| set | figure | candidate | baseline | difference | at least as good |", "|---|---|---|---|---|---|"]
    for r in rows:
        fmt = "{:.4f}" if abs(r.baseline) < 1 else "{:.2f}"
        lines.append(f"| {r.short_where} | {r.figure} | {fmt.format(r.candidate)} | {fmt.format(r.baseline)} | "
                     f"{r.delta:+.4f} | {'yes' if r.holds(tolerance) else '**no**'} |")
    return "\n".join(lines)


def verdict(rows: list[Comparison], tolerance: float = 0.0) -> tuple[bool, list[Comparison]]:
    """(ship?, the figures where the candidate falls short)."""
    short = [r for r in rows if not r.holds(tolerance)]
    return not short, short
