"""Files are sacred: what the commands do with inputs, existing outputs, bad files and full disks.

Every output is written to a temporary name beside it and renamed into place, so a failure never
leaves a partial or temporary file; an input is never replaced; an existing output is replaced only
with --force; every refusal comes before the model loads, with the cause first and no traceback.
"""
from __future__ import annotations

import errno
import hashlib
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import fuzz_examples
from hypothesis import given, settings
from hypothesis import strategies as st

from dap_led_ros import cli, file_output
from dap_led_ros.file_output import OutputExistsError, atomic_output, is_temporary, write_bytes
from dap_led_ros.imaging.image_io import incomplete_reason, read_image
from dap_led_ros.settings import load_yaml_mapping

NO_MODEL = "/nonexistent/model.safetensors"  # a refusal that names something else came before the load


def _img(path: Path, h: int = 24, w: int = 32, seed: int = 0, dtype=np.uint8) -> Path:
    hi = 60 if dtype == np.uint8 else 60 * 257
    cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, hi, (h, w, 3), dtype=dtype))
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _main(capsys, *args: str) -> tuple[int, str]:
    """Exit status and stderr of `dap-led ARGS` run here (stdout stays in capsys)."""
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    sys.stdout.write(out)
    return code, err


def _model(ckpt: Path) -> list[str]:
    return ["--model", str(ckpt), "--backend", "torch", "--threads", "1"]


def _leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if is_temporary(p)]


def _env() -> dict[str, str]:
    # No bytecode: under RLIMIT_FSIZE CPython would cache truncated .pyc files (it ignores short writes).
    return {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"),
            "PYTHONDONTWRITEBYTECODE": "1"}


def _limited_run(args: list[str], max_file_bytes: int, cwd: Path) -> subprocess.CompletedProcess:
    """`dap-led ARGS` where writing a file past `max_file_bytes` fails with EFBIG (a full disk)."""
    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))
    return subprocess.run([sys.executable, "-m", "dap_led_ros.cli", *args], capture_output=True, text=True,
                          timeout=300, env=_env(), cwd=cwd, preexec_fn=limit)


# ----------------------------------------------------------------------------- enhance: inputs


def test_enhance_never_replaces_its_input_by_any_name(tmp_path: Path, capsys, monkeypatch) -> None:
    src = _img(tmp_path / "a.png")
    before = _digest(src)
    (tmp_path / "link.png").symlink_to(src)
    os.link(src, tmp_path / "hard.png")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    for out in ("../a.png", str(src), str(tmp_path / "link.png"), str(tmp_path / "hard.png"), "..",
                str(tmp_path) + "/"):
        for extra in ([], ["--force"]):
            code, err = _main(capsys, "enhance", "../a.png", out, "--model", NO_MODEL, *extra)
            assert code == 2, (out, err)
            assert err.startswith("error: the output") and "is an input file" in err, (out, err)
    # the contact sheet is an output too
    code, err = _main(capsys, "enhance", "../a.png", "b.png", "--contact-sheet", "../hard.png", "--model", NO_MODEL)
    assert code == 2 and "is an input file" in err
    assert _digest(src) == before and not (tmp_path / "sub" / "b.png").exists()


def test_enhance_refuses_an_output_folder_that_is_or_lies_in_the_input_folder(tmp_path: Path, capsys) -> None:
    src = tmp_path / "in"
    src.mkdir()
    _img(src / "a.png")
    (tmp_path / "alias").symlink_to(src)
    for out in (src, src / "restored", tmp_path / "alias", tmp_path / "alias" / "x"):
        code, err = _main(capsys, "enhance", str(src), str(out), "--png", "--model", NO_MODEL)
        assert code == 2 and "must not be the input folder" in err, (out, err)
    assert sorted(p.name for p in src.iterdir()) == ["a.png"]


def test_enhance_refuses_two_inputs_landing_on_one_output(tmp_path: Path, capsys) -> None:
    src = tmp_path / "in"
    src.mkdir()
    _img(src / "a.png")
    _img(src / "a.jpg")
    code, err = _main(capsys, "enhance", str(src), str(tmp_path / "out"), "--png", "--model", NO_MODEL)
    assert code == 2 and "would both be written to" in err and "a.png" in err


# ----------------------------------------------------------------------------- enhance: outputs


def test_existing_outputs_are_replaced_only_with_force(tmp_path: Path, tiny_checkpoint: Path, capsys) -> None:
    src = _img(tmp_path / "a.png")
    out = tmp_path / "b.png"
    out.write_bytes(b"keep me")
    code, err = _main(capsys, "enhance", str(src), str(out), "--model", NO_MODEL)
    assert code == 2 and err.strip() == f"error: {out} exists; pass --force to replace it"
    assert out.read_bytes() == b"keep me"
    code, err = _main(capsys, "enhance", str(src), str(out), "--force", *_model(tiny_checkpoint))
    assert code == 0, err
    assert cv2.imread(str(out)).shape == (24, 32, 3) and not _leftovers(tmp_path)

    folder, dst = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    for i in range(4):
        _img(folder / f"f{i}.png", seed=i)
    dst.mkdir()
    for i in range(3):
        (dst / f"f{i}.png").write_bytes(b"old")
    code, err = _main(capsys, "enhance", str(folder), str(dst), "--model", NO_MODEL)
    assert code == 2 and "3 of the 4 outputs exist already" in err and "--force" in err
    assert [(dst / f"f{i}.png").read_bytes() for i in range(3)] == [b"old"] * 3
    assert not (dst / "f3.png").exists()  # nothing written before the refusal


def test_unknown_output_suffix_is_refused_before_the_model_loads(tmp_path: Path, capsys) -> None:
    src = _img(tmp_path / "a.png")
    for out, what in (("b.xyz", "'.xyz' is not an image format"), ("b", "it has no suffix"),
                      ("b.gif", "'.gif' is not an image format")):
        code, err = _main(capsys, "enhance", str(src), str(tmp_path / out), "--model", NO_MODEL)
        assert code == 2 and what in err and "Traceback" not in err, err
        assert not (tmp_path / out).exists()
    code, err = _main(capsys, "enhance", str(src), str(tmp_path / "c.png"), "--contact-sheet",
                      str(tmp_path / "sheet.txt"), "--model", NO_MODEL)
    assert code == 2 and "--contact-sheet" in err and "'.txt'" in err


# ----------------------------------------------------------------------------- enhance: bad files


def test_truncated_jpeg_and_png_fail_and_write_nothing(tmp_path: Path, tiny_checkpoint: Path, capsys) -> None:
    src = tmp_path / "in"
    src.mkdir()
    smooth = np.tile(np.linspace(0, 255, 160, dtype=np.uint8)[None, :, None], (120, 1, 3))
    for suffix in (".jpg", ".png"):
        data = cv2.imencode(suffix, smooth)[1].tobytes()
        (src / f"cut{suffix}").write_bytes(data[:len(data) // 2])
    _img(src / "z_good.png")
    out = tmp_path / "out"
    code, err = _main(capsys, "enhance", str(src), str(out), *_model(tiny_checkpoint))
    assert code == 1, err
    assert "cut.jpg: truncated or corrupt JPEG" in err and "cut.png: truncated or corrupt PNG" in err
    assert "2 failed" in err
    assert sorted(p.name for p in out.iterdir()) == ["z_good.png"]


def test_every_proper_prefix_of_a_jpeg_or_png_is_incomplete() -> None:
    rng = np.random.default_rng(3)
    img = rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)
    encodings = [(".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, p, cv2.IMWRITE_JPEG_RST_INTERVAL, r])
                 for p in (0, 1) for r in (0, 3)] + [(".png", [])]
    for suffix, params in encodings:
        data = cv2.imencode(suffix, img, params)[1].tobytes()
        assert incomplete_reason(data) is None and incomplete_reason(data + b"\0trailer") is None
        cut = [k for k in range(8, len(data)) if incomplete_reason(data[:k]) is None]
        assert cut == [], (suffix, params, cut[:3])


def test_sixteen_bit_input_is_restored_at_eight_bits_with_a_warning(tmp_path: Path, tiny_checkpoint: Path,
                                                                    capsys) -> None:
    src = _img(tmp_path / "deep.png", dtype=np.uint16)
    assert read_image(src).bit_depth == 16
    code, err = _main(capsys, "enhance", str(src), str(tmp_path / "out.png"), *_model(tiny_checkpoint))
    assert code == 0, err
    assert "warning: " in err and "16-bit input processed at 8 bits" in err
    assert cv2.imread(str(tmp_path / "out.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint8
    code, err = _main(capsys, "enhance", str(_img(tmp_path / "flat.png")), str(tmp_path / "o2.png"),
                      *_model(tiny_checkpoint))
    assert code == 0 and "warning" not in err


def test_gif_is_refused_alone_and_named_as_skipped_in_a_folder(tmp_path: Path, tiny_checkpoint: Path,
                                                              capsys) -> None:
    frames = tmp_path / "anim.gif"
    frames.write_bytes(b"GIF89a" + bytes(64))
    code, err = _main(capsys, "enhance", str(frames), str(tmp_path / "o.png"), "--model", NO_MODEL)
    assert code == 2 and "GIF is not supported" in err and "extract its frames" in err
    src = tmp_path / "in"
    src.mkdir()
    frames.rename(src / "anim.gif")
    _img(src / "a.png")
    code, err = _main(capsys, "enhance", str(src), str(tmp_path / "out"), *_model(tiny_checkpoint))
    assert code == 0, err
    assert "skipped 1 file(s) of unsupported formats" in err and "anim.gif" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png"]


class _Flaky:
    """A backend that fails on some frames the way real ones can (a BackendError, a bug)."""

    name = "flaky"
    supports_prior_input = False
    supports_exact_tiling = False

    def infer(self, x: np.ndarray) -> np.ndarray:
        h, w = x.shape[-2:]
        if min(h, w) < 16:
            from dap_led_ros.runtime.backends.base import BackendError

            raise BackendError(f"input {w}x{h} is smaller than the graph's 16 px")
        if w == 33:
            raise ZeroDivisionError("a bug in the backend")
        return x

    def describe(self) -> str:
        return self.name

    def close(self) -> None:
        pass


def test_a_failing_image_never_stops_the_folder(tmp_path: Path, tiny_checkpoint: Path, capsys,
                                                monkeypatch) -> None:
    from dap_led_ros.cli import enhance
    from dap_led_ros.enhancer import Enhancer, EnhancerConfig

    monkeypatch.setattr(enhance, "enhancer_from_args",
                        lambda args, **settings: Enhancer(EnhancerConfig(model=str(tiny_checkpoint), backend="torch"),
                                              backend=_Flaky()))
    src = tmp_path / "in"
    src.mkdir()
    _img(src / "a_tiny.png", 5, 7)
    _img(src / "b_bug.png", 20, 33)
    for name in ("c.png", "d.png"):
        _img(src / name)
    out = tmp_path / "out"
    code, err = _main(capsys, "enhance", str(src), str(out))
    assert code == 1
    assert "a_tiny.png: input 7x5 is smaller" in err and "b_bug.png: ZeroDivisionError: a bug" in err
    assert "Traceback" not in err and "2 failed" in err
    assert sorted(p.name for p in out.iterdir()) == ["c.png", "d.png"]
    assert "enhanced 2/4 images" in capsys.readouterr().out


def test_a_full_disk_leaves_no_partial_or_temporary_file(tmp_path: Path, tiny_checkpoint: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    for name in ("new.png", "old.png"):
        _img(src / name, 64, 96)  # ~9 KB as PNG: larger than the limit
    (out / "old.png").write_bytes(b"the old output")
    r = _limited_run(["enhance", "in", "out", "--force", *_model(tiny_checkpoint)], 4096, tmp_path)
    assert r.returncode == 1, r.stderr
    for name in ("new.png", "old.png"):
        assert f"cannot write out/{name}: File too large" in r.stderr
    assert "2 failed" in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["old.png"]
    assert (out / "old.png").read_bytes() == b"the old output"


# ----------------------------------------------------------------------------- other commands


def test_export_and_eval_refuse_an_unwritable_output_before_the_work(tmp_path: Path, capsys) -> None:
    code, err = _main(capsys, "export", "-o", "/proc/nope/x.onnx", "--model", NO_MODEL)
    assert code == 2 and err.startswith("error: cannot create output folder /proc/nope")
    code, err = _main(capsys, "eval", "--out-dir", "/proc/nope", "--no-synthetic", "--model", NO_MODEL)
    assert code == 2 and err.startswith("error: cannot create --out-dir /proc/nope")
    code, err = _main(capsys, "bench", "--out-dir", "/proc/nope", "--sizes", "32x32")
    assert code == 2 and err.startswith("error: cannot create --out-dir /proc/nope")
    (tmp_path / "a.onnx").write_bytes(b"old")
    code, err = _main(capsys, "export", "-o", str(tmp_path / "a.onnx"), "--model", NO_MODEL)
    assert code == 2 and "a.onnx exists; pass --force" in err
    code, err = _main(capsys, "export", "-o", str(tmp_path / "a.txt"), "--model", NO_MODEL)
    assert code == 2 and "must be a .onnx file" in err


def test_export_on_a_full_disk_leaves_nothing_and_force_replaces_whole(tmp_path: Path, tiny_checkpoint: Path,
                                                                      capsys) -> None:
    args = ["export", "--model", str(tiny_checkpoint), "-o", "m.onnx", "--check-sizes"]
    r = _limited_run(args, 256 * 1024, tmp_path)
    assert r.returncode == 1 and "cannot write m.onnx: File too large" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    (tmp_path / "m.onnx").write_bytes(b"old")
    out = tmp_path / "m.onnx"
    code, err = _main(capsys, *args[:-3], "-o", str(out), "--check-sizes", "--force")
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.heatmaps.onnx", "m.onnx", "m.prior.onnx"]
    assert out.stat().st_size > 1000


def test_params_and_settings_files_that_are_not_utf8_yaml_mappings_exit_2(tmp_path: Path, capsys) -> None:
    cases = {"binary.yaml": (b"\xff\xfe\x00\x81 not text", "is not UTF-8 text"),
             "bad.yaml": (b"a: [1\n", "is not valid YAML"),
             "list.yaml": (b"- 1\n- 2\n", "must map node names")}
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        code, err = _main(capsys, "pipeline", "--params", str(tmp_path / name))
        assert code == 2 and err.startswith("error: ") and message in err and "Traceback" not in err, err
    with pytest.raises(ValueError, match="is not UTF-8 text"):
        load_yaml_mapping(tmp_path / "binary.yaml", "training config")
    with pytest.raises(ValueError, match="expected a mapping at the top level, got list"):
        load_yaml_mapping(tmp_path / "list.yaml", "training config")
    code, err = _main(capsys, "train", "--config", str(tmp_path / "binary.yaml"), "--out", str(tmp_path / "run"))
    assert code == 2 and "training config" in err and "not UTF-8" in err


# ----------------------------------------------------------------------------- the atomic writer


class _Injected(Exception):
    pass


@settings(max_examples=fuzz_examples(120, 3000))
@given(data=st.binary(max_size=4096), old=st.one_of(st.none(), st.binary(max_size=256)),
       fail_at=st.sampled_from(["none", "write", "fsync", "link", "replace", "interrupt"]),
       after=st.integers(0, 4096), force=st.booleans())
def test_atomic_write_is_all_or_nothing(tmp_path_factory, data: bytes, old: bytes | None, fail_at: str, after: int,
                                        force: bool) -> None:
    folder = tmp_path_factory.mktemp("atomic")
    path = folder / "out.bin"
    if old is not None:
        path.write_bytes(old)
    real = {"fsync": os.fsync, "link": os.link, "replace": os.replace}

    def boom(*a, **k):
        raise _Injected(fail_at)

    patched = {}
    if fail_at in ("fsync", "link", "replace"):
        patched[fail_at] = getattr(file_output.os, fail_at)
        setattr(file_output.os, fail_at, boom)
    raised = None
    try:
        with atomic_output(path, force) as tmp, open(tmp, "xb") as f:
            f.write(data[:after])
            if fail_at == "write":
                raise OSError(errno.ENOSPC, "No space left on device")
            if fail_at == "interrupt":
                raise KeyboardInterrupt
            f.write(data[after:])
    except (OSError, _Injected, KeyboardInterrupt) as exc:
        raised = exc
    finally:
        for name in patched:
            setattr(file_output.os, name, real[name])
    names = sorted(p.name for p in folder.iterdir())
    assert names == ([] if old is None and raised is not None else ["out.bin"])  # never a temporary file
    if raised is None:
        assert path.read_bytes() == data
        assert old is None or force
    else:
        if old is not None:
            assert path.read_bytes() == old  # unchanged
        if isinstance(raised, OutputExistsError):
            assert old is not None and not force
    for p in folder.iterdir():
        p.unlink()
    folder.rmdir()


def test_atomic_write_refuses_an_existing_file_and_fails_cleanly_on_a_full_disk(tmp_path: Path) -> None:
    target = tmp_path / "x.txt"
    write_bytes(target, b"one")
    with pytest.raises(OutputExistsError, match="x.txt exists; pass --force"):
        write_bytes(target, b"two")
    write_bytes(target, b"two", force=True)
    assert target.read_bytes() == b"two"
    script = ("import sys; from dap_led_ros.file_output import write_bytes\n"
              "try:\n write_bytes(sys.argv[1], bytes(100000), force=True)\n"
              "except OSError as e:\n print(e.errno); sys.exit(3)\n")

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))
    r = subprocess.run([sys.executable, "-c", script, str(target)], capture_output=True, text=True, timeout=120,
                       env=_env(), preexec_fn=limit)
    assert r.returncode == 3 and r.stdout.strip() == str(errno.EFBIG), r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.txt"] and target.read_bytes() == b"two"


def test_a_failed_checkpoint_save_keeps_the_earlier_checkpoint(tmp_path: Path, monkeypatch) -> None:
    # `dap-led train` saves its checkpoints through the same writer: a save that fails half-way
    # (full disk, Ctrl-C) leaves the earlier weights and config as they were, and no temporary file.
    from dap_led_ros import checkpoint
    from dap_led_ros.model import ModelConfig, build_model

    cfg = ModelConfig()
    path = tmp_path / "ckpt"
    checkpoint.save_checkpoint(build_model(cfg), cfg, path, extra={"step": 1})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def half_written(state, filename):
        Path(filename).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(checkpoint, "save_file", half_written)
    with pytest.raises(OSError, match="No space left"):
        checkpoint.save_checkpoint(build_model(cfg), cfg, path, extra={"step": 2})
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert checkpoint.read_checkpoint_config(path)[1]["step"] == 1
