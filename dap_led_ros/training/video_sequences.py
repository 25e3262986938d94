"""Synthetic night video: camera motion over held-out photos, a moving object, fresh noise per frame.

Each sequence takes one held-out photo (the validation split of `split_photos`, then the Debian
pool's held-out share when installed; never a training photo), resized to cover the frame plus a
margin, and moves a virtual camera over it: a steady pan with a little hand shake, zoom and roll.
An elliptical object cut from another held-out photo crosses the frame faster than the background
moves (its mask is kept: the ghost test scores the error inside it). Every frame is degraded by
one `DegradationParams` drawn per sequence (the same exposure, blur, noise levels and JPEG
quality, as a camera at fixed settings gives) with independent sensor noise per frame. The clean
frames are the ground truth.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Iterator

import cv2
import numpy as np

from dap_led_ros.training.clean_photos import list_clean_photos, load_clean_photo, split_photos, split_pool
from dap_led_ros.training.datasets import resize_to_cover
from dap_led_ros.training.synthesis import DegradationParams, SynthesisConfig, sample_params, synthesize


@dataclass
class SequenceConfig:
    """How the synthetic sequences move. Speeds in pixels per frame at the output size."""

    size: tuple[int, int] = (400, 640)            # frame height, width
    frames: int = 12
    margin: float = 0.25                          # canvas = frame * (1 + margin): room to pan
    pan_speed_range: tuple[float, float] = (1.0, 5.0)
    shake_px: float = 0.6                         # std of the per-frame hand-shake offset
    zoom_per_frame: float = 0.004                 # max |log zoom| change per frame
    roll_deg_per_frame: float = 0.15              # max roll change per frame
    object_size_range: tuple[float, float] = (0.18, 0.3)   # object height / frame height
    object_speed_range: tuple[float, float] = (6.0, 12.0)
    # Sensor gain on top of the sampled noise (a shorter exposure pushed brighter): shot-noise
    # variance x noise_gain, read-noise std x sqrt(noise_gain). 1 = the still-photo synthesis.
    noise_gain: float = 1.0

    def validate(self) -> None:
        h, w = self.size
        if h < 32 or w < 32:
            raise ValueError(f"sequence frames must be at least 32x32, got {w}x{h}")
        if self.frames < 2:
            raise ValueError(f"a sequence needs at least 2 frames, got {self.frames}")
        if self.margin < 0:
            raise ValueError(f"margin must be >= 0, got {self.margin}")
        if not 1 <= self.noise_gain <= 1024:
            raise ValueError(f"noise_gain must be in [1, 1024], got {self.noise_gain}")


@dataclass
class VideoSequence:
    name: str
    clean: list[np.ndarray]         # H x W x 3 uint8 RGB ground truth per frame
    degraded: list[np.ndarray]      # the camera's frames
    object_masks: list[np.ndarray]  # H x W bool: where the moving object is
    params: DegradationParams       # the sequence's degradation (every frame's)
    noise_seed: tuple[int, ...] = ()

    def redraw(self, t: int, k: int) -> np.ndarray:
        """Frame t degraded again with the k-th other noise draw (the same scene, blur and exposure)."""
        return synthesize(self.clean[t], self.params, np.random.default_rng((*self.noise_seed, t, 1000 + k))).low

    def noise_free(self, t: int) -> np.ndarray:
        """Frame t degraded without sensor noise (the same blur, exposure and JPEG): what infinitely
        many perfectly merged frames would show the network."""
        params = replace(self.params, shot_gain=0.0, read_noise=0.0, sensor=None)
        return synthesize(self.clean[t], params, np.random.default_rng((*self.noise_seed, t, 999))).low


def held_out_photos() -> list:
    """Photo references no training run sees: the validation split, then the Debian held-out share."""
    refs = list_clean_photos()
    _, val = split_photos(refs, val_fraction=0.15, seed=0)
    val2 = split_pool(refs, val_fraction=0.15, seed=0).val2
    photos = list(val) + [r for r in val2 if r.name not in {v.name for v in val}]
    if len(photos) < 2:
        raise ValueError("need at least two held-out photos for video sequences")
    return photos


def _camera_matrix(centre: tuple[float, float], zoom: float, roll_deg: float, size: tuple[int, int]) -> np.ndarray:
    """2x3 affine taking canvas pixels to frame pixels: the frame looks at `centre` of the canvas."""
    h, w = size
    a = math.radians(roll_deg)
    c, s = math.cos(a) * zoom, math.sin(a) * zoom
    cx, cy = centre
    # frame = R*S*(canvas - centre) + frame_centre
    return np.array([[c, -s, w / 2 - (c * cx - s * cy)],
                     [s, c, h / 2 - (s * cx + c * cy)]], np.float32)


def _object_sprite(photo: np.ndarray, height: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """An elliptical patch of `photo` (RGB float) and its soft alpha (H x W float in [0, 1])."""
    oh = max(8, height)
    ow = max(8, int(oh * rng.uniform(0.8, 1.6)))
    img = resize_to_cover(photo, oh * 2, ow * 2)
    y0 = int(rng.integers(0, img.shape[0] - oh + 1))
    x0 = int(rng.integers(0, img.shape[1] - ow + 1))
    patch = img[y0:y0 + oh, x0:x0 + ow].astype(np.float32)
    alpha = np.zeros((oh, ow), np.float32)
    cv2.ellipse(alpha, (ow // 2, oh // 2), (ow // 2 - 2, oh // 2 - 2), 0, 0, 360, 1.0, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), 1.0)
    return patch, alpha


def _paste(frame: np.ndarray, patch: np.ndarray, alpha: np.ndarray, top: float, left: float) -> np.ndarray:
    """Composite the sprite at a sub-pixel position; returns the frame's alpha map."""
    h, w = frame.shape[:2]
    m = np.array([[1, 0, left], [0, 1, top]], np.float32)
    a = cv2.warpAffine(alpha, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
    p = cv2.warpAffine(patch, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
    frame[:] = frame * (1 - a[:, :, None]) + p * a[:, :, None]
    return a


def make_sequence(index: int, photos: list, cfg: SequenceConfig, seed: int,
                  synthesis: SynthesisConfig | None = None) -> VideoSequence:
    """Sequence `index` of the seeded set (photo index mod N, object from the next photo)."""
    cfg.validate()
    rng = np.random.default_rng((seed, index))
    h, w = cfg.size
    ref = photos[index % len(photos)]
    canvas = resize_to_cover(load_clean_photo(ref, max_side=1600), int(h * (1 + cfg.margin)) + 2,
                             int(w * (1 + cfg.margin)) + 2).astype(np.float32)
    ch, cw = canvas.shape[:2]
    other = load_clean_photo(photos[(index + 1) % len(photos)], max_side=1280)

    # Background path: start so that the pan stays inside the canvas.
    speed = rng.uniform(*cfg.pan_speed_range)
    heading = rng.uniform(0, 2 * math.pi)
    v = np.array([math.cos(heading), math.sin(heading)]) * speed
    travel = v * (cfg.frames - 1)
    room = np.array([(cw - w) / 2, (ch - h) / 2]) - 2 * cfg.shake_px - 2
    start = np.array([cw / 2, ch / 2]) - np.clip(travel / 2, -room, room)
    zoom_rate = rng.uniform(-cfg.zoom_per_frame, cfg.zoom_per_frame)
    roll_rate = rng.uniform(-cfg.roll_deg_per_frame, cfg.roll_deg_per_frame)

    # Object path: crosses the frame, fully inside at the middle frame.
    patch, alpha = _object_sprite(other, int(h * rng.uniform(*cfg.object_size_range)), rng)
    oh, ow = alpha.shape
    ospeed = rng.uniform(*cfg.object_speed_range)
    oheading = rng.uniform(0, 2 * math.pi)
    ov = np.array([math.cos(oheading), math.sin(oheading)]) * ospeed
    mid = np.array([rng.uniform(ow / 2, w - ow / 2), rng.uniform(oh / 2, h - oh / 2)])

    params = replace(sample_params(rng, synthesis), lights=())
    params = replace(params, shot_gain=params.shot_gain * cfg.noise_gain,
                     read_noise=params.read_noise * math.sqrt(cfg.noise_gain))
    clean, degraded, masks = [], [], []
    for t in range(cfg.frames):
        centre = start + v * t + rng.normal(0, cfg.shake_px, 2)
        zoom = math.exp(zoom_rate * t)
        m = _camera_matrix((float(centre[0]), float(centre[1])), zoom, roll_rate * t, cfg.size)
        frame = cv2.warpAffine(canvas, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        pos = mid + ov * (t - (cfg.frames - 1) / 2)
        a = _paste(frame, patch, alpha, float(pos[1] - oh / 2), float(pos[0] - ow / 2))
        gt = np.clip(frame + 0.5, 0, 255).astype(np.uint8)
        pair = synthesize(gt, params, np.random.default_rng((seed, index, t, 1)))
        clean.append(pair.high)
        degraded.append(pair.low)
        masks.append(a > 0.5)
    return VideoSequence(name=f"seq{index:02d}_{ref.name.replace('/', '_')}", clean=clean,
                         degraded=degraded, object_masks=masks, params=params, noise_seed=(seed, index))


def synthetic_sequences(cfg: SequenceConfig | None = None, n: int = 8, seed: int = 2468,
                        synthesis: SynthesisConfig | None = None, photos: list | None = None) -> Iterator[VideoSequence]:
    """`n` seeded sequences over the held-out photos, or over `photos` (made one at a time)."""
    cfg = cfg or SequenceConfig()
    photos = photos if photos is not None else held_out_photos()
    for i in range(n):
        yield make_sequence(i, photos, cfg, seed, synthesis)
