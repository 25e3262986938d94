"""Image quality figures.

Full-reference (a restored image against its ground truth), on H x W x 3 arrays, uint8 or float
in [0, 1]:
- `psnr`: 10 log10(1 / MSE) on [0, 1] data over all pixels and channels (inf for identical images).
- `psnr_level_fitted`: PSNR after fitting the output's level to the ground truth: one gain per
  colour channel in linear light (least squares), then sRGB again. A wrong brightness or white
  balance costs nothing here; noise, blur and lost detail do. Beside `psnr`, it separates the
  exposure decision from the restoration.
- `level_error`: the exposure error, mean BT.601 luma of the output minus the ground truth's, in
  grey levels 0-255 (> 0: too bright); `dap-led eval` reports its mean absolute value and its mean.
- `mean_psnr`: the mean over frames with each frame capped at `PSNR_CAP_DB` (60 dB), so a frame
  restored exactly (an identity pair handed back untouched) counts as a perfect frame instead of
  being infinite or left out.
- `ssim`: the mean structural similarity of Wang et al. (2004) as scikit-image computes it with
  the paper's settings (Gaussian window sigma 1.5, K1 0.01, K2 0.03, population covariance),
  averaged over the three colour channels.

No-reference (real night frames without ground truth), on the BT.601 luma Y in [0, 1]:
- `brightness`: mean of Y.
- `noise_sigma`: standard deviation of Gaussian noise in Y, estimated robustly from the response
  to Immerkaer's (1996) noise mask [[1,-2,1],[-2,4,-2],[1,-2,1]] (which cancels smooth image
  content and maps white noise of std s to std 6 s): 1.4826 * median(|response|) / 6.
- `relative_noise`: noise_sigma / brightness, i.e. noise relative to the signal. Brightening an
  image multiplies both, so this is the figure that says whether a restoration removed noise
  rather than just scaling it.
- `sharpness`: standard deviation of the Laplacian of the *rank-normalised* Y (every pixel replaced
  by its luma's rank in the frame, scaled to [0, 1], i.e. histogram equalisation), measured at
  1/4 resolution (area down-scaling) after a Gaussian pre-filter of sigma 1 px at that scale.
  The rank transform makes the figure invariant to any global monotonic tone change (gain,
  gamma, auto-exposure, the sRGB curve), so a restoration does not score higher by being
  brighter; the 1/4 scale measures edges of the size that camera-shake blur destroys while pixel
  noise averages out, so denoising does not count as blurring. Blur lowers it. (Plain Laplacian
  variance of a night frame is dominated by its light sources and by noise.)
- `fine_detail`: the same at full resolution: high-frequency content, noise included (a
  denoiser lowers it).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from dap_led_ros.imaging.luma import BT601, mean_luma

_LUMA_601 = np.asarray(BT601, dtype=np.float64)


def as_float(img: np.ndarray) -> np.ndarray:
    """uint8 -> float64 in [0, 1]; float arrays are returned as float64 unchanged."""
    if img.dtype == np.uint8:
        return img.astype(np.float64) / 255.0
    if np.issubdtype(img.dtype, np.floating):
        return img.astype(np.float64, copy=False)
    raise TypeError(f"expected uint8 or float image, got {img.dtype}")


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected H x W x 3 images, got {a.shape}")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB (data range 1)."""
    _check_pair(a, b)
    mse = float(np.mean((as_float(a) - as_float(b)) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(1.0 / mse)


def level_fit(out: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """`out` (uint8 sRGB) with one least-squares gain per channel in linear light towards `gt`."""
    from dap_led_ros.imaging.srgb import srgb_decode, srgb_encode

    _check_pair(out, gt)
    o = srgb_decode(out).reshape(-1, 3).astype(np.float64)
    t = srgb_decode(gt).reshape(-1, 3).astype(np.float64)
    gain = (o * t).sum(axis=0) / np.maximum((o * o).sum(axis=0), 1e-12)
    gain = np.where((o * o).sum(axis=0) > 1e-12, gain, 1.0)
    return srgb_encode((o * gain).reshape(out.shape).astype(np.float32))


def psnr_level_fitted(out: np.ndarray, gt: np.ndarray) -> float:
    """PSNR of `out` after `level_fit` (uint8 sRGB frames)."""
    return psnr(level_fit(out, gt), gt)


def level_error(out: np.ndarray, gt: np.ndarray) -> float:
    """Mean BT.601 luma of `out` minus that of `gt` (every pixel), in grey levels 0-255."""
    _check_pair(out, gt)
    return 255.0 * (mean_luma(out, stride=1) - mean_luma(gt, stride=1))


# Per-frame PSNR cap for set means: at 8 bits, 60 dB is an RMS error of 1/4 grey level.
PSNR_CAP_DB = 60.0


def mean_psnr(values: list[float]) -> float:
    """Mean per-frame PSNR with each frame capped at PSNR_CAP_DB (nan for no frames)."""
    return float(np.mean(np.minimum(np.asarray(values, np.float64), PSNR_CAP_DB))) if values else math.nan


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM over the image and its three channels (data range 1)."""
    from skimage.metrics import structural_similarity

    _check_pair(a, b)
    return float(structural_similarity(as_float(a), as_float(b), channel_axis=2, data_range=1.0,
                                       gaussian_weights=True, sigma=1.5, use_sample_covariance=False))


def luma(img: np.ndarray) -> np.ndarray:
    """BT.601 luma of an H x W x 3 RGB image, float64 in [0, 1]."""
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 image, got {img.shape}")
    return as_float(img) @ _LUMA_601


@dataclass
class NoReferenceFigures:
    brightness: float
    noise_sigma: float
    relative_noise: float
    sharpness: float
    fine_detail: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


_NOISE_MASK = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float64)


def noise_sigma(img: np.ndarray) -> float:
    """Robust (median-based) Immerkaer noise estimate of the luma, in [0, 1] units."""
    y = luma(img)
    if min(y.shape) < 3:
        raise ValueError(f"image {y.shape} too small for a noise estimate")
    response = cv2.filter2D(y, cv2.CV_64F, _NOISE_MASK)[1:-1, 1:-1]
    return float(1.4826 * np.median(np.abs(response)) / 6.0)


def rank_normalise(y: np.ndarray) -> np.ndarray:
    """Each value replaced by its rank in the array, scaled to [0, 1] (ties share their mean rank)."""
    flat = y.ravel()
    values, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
    mid_rank = np.cumsum(counts) - (counts + 1) / 2.0
    return (mid_rank[inverse] / max(flat.size - 1, 1)).reshape(y.shape)


def sharpness(img: np.ndarray, scale: int = 4, sigma: float = 1.0) -> float:
    """Tone-invariant edge strength at 1/`scale` resolution (see the module docstring)."""
    y = rank_normalise(luma(img))
    if scale > 1 and min(y.shape) // scale >= 16:
        y = cv2.resize(y, (y.shape[1] // scale, y.shape[0] // scale), interpolation=cv2.INTER_AREA)
    smooth = cv2.GaussianBlur(y, (0, 0), sigma)
    return float(cv2.Laplacian(smooth, cv2.CV_64F).std())


def no_reference(img: np.ndarray) -> NoReferenceFigures:
    y = luma(img)
    bright = float(y.mean())
    sigma = noise_sigma(img)
    return NoReferenceFigures(brightness=bright, noise_sigma=sigma,
                              relative_noise=sigma / max(bright, 1e-6), sharpness=sharpness(img),
                              fine_detail=sharpness(img, scale=1))
