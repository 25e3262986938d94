"""`dap-led make-sample-bag OUT`: a short synthetic night drive as a rosbag2 bag.

A clean photo from the package's offline pool (`clean_photos`) is filmed by a virtual camera
that drives towards the photo's centre (a slowly zooming, gently steering crop with road bumps);
each frame is then degraded by `synthesis.synthesize`: one night exposure / noise / highlight
setting for the whole drive, a fresh camera-shake blur per frame, and a few light sources fixed
in the scene (they move with it and smear into streaks). Topics:

- /camera/image_raw (sensor_msgs/Image, bgr8), or with --compressed
  /camera/image_raw/compressed (sensor_msgs/CompressedImage, "bgr8; jpeg compressed bgr8");
- /camera/camera_info (sensor_msgs/CameraInfo, pinhole, 60 degree horizontal field of view);
- /imu (sensor_msgs/Imu at 100 Hz): rates matching the camera motion, plus gravity and noise.

The same seed and options give the same messages.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from rosbags.rosbag2 import Writer
from tqdm import tqdm

from dap_led_ros.bag.bag_errors import BagError, storage_writes
from dap_led_ros.bag.bag_io import (
    CAMERA_INFO,
    COMPRESSED_IMAGE,
    IMAGE,
    STORAGES,
    TYPESTORE,
)
from dap_led_ros.bag.bag_output import atomic_bag_output, check_output_path
from dap_led_ros.training.clean_photos import list_clean_photos, load_clean_photo
from dap_led_ros.training.synthesis import (
    DegradationParams,
    LightSource,
    SynthesisConfig,
    motion_blur_kernel,
    sample_params,
    synthesize,
)

IMU = "sensor_msgs/msg/Imu"
IMAGE_TOPIC = "/camera/image_raw"
COMPRESSED_TOPIC = "/camera/image_raw/compressed"
CAMERA_INFO_TOPIC = "/camera/camera_info"
IMU_TOPIC = "/imu"
CAMERA_FRAME = "camera_optical_frame"
IMU_FRAME = "imu_link"
HFOV_DEG = 60.0

# Linear-light colours of the scene's lights: sodium street lamp, warm white, LED, tail light.
_LAMP_COLOURS = ((1.0, 0.55, 0.2), (1.0, 0.85, 0.6), (0.85, 0.92, 1.0), (1.0, 0.12, 0.08))


@dataclass
class SampleBagConfig:
    frames: int = 60
    width: int = 640
    height: int = 400
    fps: float = 15.0
    imu_rate: float = 100.0
    seed: int = 0
    photo: str = "mvtb/road"          # clean photo name (see clean_photos.list_clean_photos)
    compressed: bool = False          # CompressedImage (JPEG) instead of raw Image
    jpeg_quality: int = 90
    storage: str = "sqlite3"
    lights: int = 6
    start_ns: int = 1_700_000_000_000_000_000   # first message's time

    def validate(self) -> None:
        if self.frames < 1:
            raise ValueError(f"frames must be >= 1, got {self.frames}")
        if self.width < 16 or self.height < 16:
            raise ValueError(f"size must be at least 16x16, got {self.width}x{self.height}")
        if self.fps <= 0 or self.imu_rate <= 0:
            raise ValueError("fps and imu rate must be positive")
        if self.storage not in STORAGES:
            raise ValueError(f"unknown storage '{self.storage}' (use {' or '.join(STORAGES)})")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg quality must be in 1..100, got {self.jpeg_quality}")


@dataclass(frozen=True)
class _Pose:
    """Crop of the photo seen at one instant (fractions of the photo; zoom = crop width)."""

    cx: float
    cy: float
    zoom: float


def _pose(u: float) -> _Pose:
    """Camera pose at drive fraction u in [0, 1]: zooming in, steering, bumping."""
    return _Pose(cx=0.5 + 0.04 * math.sin(2 * math.pi * 0.8 * u),
                 cy=0.5 + 0.008 * math.sin(2 * math.pi * 3.0 * u),
                 zoom=0.9 - 0.3 * u)


class _Camera:
    """Renders the crop for a pose and maps scene lights into it."""

    def __init__(self, photo: np.ndarray, width: int, height: int) -> None:
        # At the middle of the drive the crop is about 1:1 with the output.
        scale = width / (0.75 * photo.shape[1])
        self.photo = cv2.resize(photo, (max(width, round(photo.shape[1] * scale)),
                                        max(height, round(photo.shape[0] * scale))),
                                interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
        self.width, self.height = width, height

    def _crop(self, pose: _Pose) -> tuple[float, float, float]:
        ph, pw = self.photo.shape[:2]
        cw = min(pose.zoom * pw, ph * self.width / self.height)
        ch = cw * self.height / self.width
        x0 = min(max(pose.cx * pw - cw / 2, 0.0), pw - cw)
        y0 = min(max(pose.cy * ph - ch / 2, 0.0), ph - ch)
        return x0, y0, self.width / cw

    def render(self, pose: _Pose) -> np.ndarray:
        x0, y0, s = self._crop(pose)
        m = np.array([[s, 0, -s * x0], [0, s, -s * y0]], np.float64)
        return cv2.warpAffine(self.photo, m, (self.width, self.height), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT)

    def lights_in_view(self, pose: _Pose, lights: list[LightSource]) -> tuple[LightSource, ...]:
        """Scene lights (positions as photo fractions, radius in photo pixels) seen in the frame."""
        x0, y0, s = self._crop(pose)
        ph, pw = self.photo.shape[:2]
        out = []
        for light in lights:
            fx = (light.x * pw - x0) * s / self.width
            fy = (light.y * ph - y0) * s / self.height
            if 0 <= fx <= 1 and 0 <= fy <= 1:
                out.append(dataclasses.replace(light, x=fx, y=fy, radius=light.radius * s))
        return tuple(out)


def _pick_photo(name: str) -> np.ndarray:
    refs = list_clean_photos()
    if not refs:
        raise BagError("no clean photos are installed (pip install mvtb-data scikit-image)")
    ref = next((r for r in refs if r.name == name), None)
    if ref is None:
        raise BagError(f"clean photo '{name}' not found; available: {', '.join(r.name for r in refs)}")
    return load_clean_photo(ref)


def _night(rng: np.random.Generator) -> DegradationParams:
    """One night setting for the whole drive (exposure map, noise, highlight gain); no blur yet."""
    return sample_params(rng, SynthesisConfig(exposure_range=(0.02, 0.06), p_blur=0.0, p_jpeg=0.0,
                                              lights_range=(0, 0)))


def _scene_lights(rng: np.random.Generator, count: int) -> list[LightSource]:
    """Lamps along the horizon band of the photo."""
    return [LightSource(y=float(rng.uniform(0.45, 0.62)), x=float(rng.uniform(0.1, 0.9)),
                        radius=float(rng.uniform(1.5, 4.0)),
                        colour=_LAMP_COLOURS[int(rng.integers(len(_LAMP_COLOURS)))],
                        intensity=float(rng.uniform(1.5, 3.0)))
            for _ in range(count)]


def _stamp(ns: int) -> object:
    return TYPESTORE.types["builtin_interfaces/msg/Time"](sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def _header(ns: int, frame_id: str) -> object:
    return TYPESTORE.types["std_msgs/msg/Header"](stamp=_stamp(ns), frame_id=frame_id)


def camera_info_msg(ns: int, width: int, height: int) -> object:
    """Pinhole CameraInfo (no distortion) with the sample camera's field of view."""
    t = TYPESTORE.types
    f = width / (2 * math.tan(math.radians(HFOV_DEG) / 2))
    cx, cy = (width - 1) / 2, (height - 1) / 2
    return t[CAMERA_INFO](
        header=_header(ns, CAMERA_FRAME), height=height, width=width, distortion_model="plumb_bob",
        d=np.zeros(5), k=np.array([f, 0, cx, 0, f, cy, 0, 0, 1], np.float64),
        r=np.eye(3).ravel(), p=np.array([f, 0, cx, 0, 0, f, cy, 0, 0, 0, 1, 0], np.float64),
        binning_x=0, binning_y=0,
        roi=t["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))


def _imu_msg(ns: int, u: float, du_dt: float, rng: np.random.Generator) -> object:
    """Yaw/pitch rates from the crop's steering and bumps (small-angle), gravity along +z."""
    t = TYPESTORE.types
    vec, quat = t["geometry_msgs/msg/Vector3"], t["geometry_msgs/msg/Quaternion"]
    hfov = math.radians(HFOV_DEG)
    eps = 1e-4
    a, b = _pose(max(0.0, u - eps)), _pose(min(1.0, u + eps))
    span = min(1.0, u + eps) - max(0.0, u - eps)
    yaw_rate = -(b.cx - a.cx) / span * du_dt * hfov
    pitch_rate = (b.cy - a.cy) / span * du_dt * hfov
    yaw = -(_pose(u).cx - 0.5) * hfov
    cov = np.diag([1e-4, 1e-4, 1e-4]).ravel()
    return t[IMU](
        header=_header(ns, IMU_FRAME),
        orientation=quat(x=0.0, y=0.0, z=math.sin(yaw / 2), w=math.cos(yaw / 2)),
        orientation_covariance=cov,
        angular_velocity=vec(x=float(rng.normal(0, 0.005)), y=pitch_rate + float(rng.normal(0, 0.005)),
                             z=yaw_rate + float(rng.normal(0, 0.005))),
        angular_velocity_covariance=cov,
        linear_acceleration=vec(x=float(rng.normal(0.3, 0.05)), y=float(rng.normal(0, 0.05)),
                                z=9.81 + float(rng.normal(0, 0.05))),
        linear_acceleration_covariance=cov)


def _image_bytes(low_rgb: np.ndarray, ns: int, cfg: SampleBagConfig) -> bytes:
    bgr = np.ascontiguousarray(low_rgb[:, :, ::-1])
    t = TYPESTORE.types
    if cfg.compressed:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality])
        if not ok:
            raise RuntimeError("OpenCV JPEG encoding failed")
        msg = t[COMPRESSED_IMAGE](header=_header(ns, CAMERA_FRAME), format="bgr8; jpeg compressed bgr8",
                                  data=np.frombuffer(buf.tobytes(), np.uint8))
        return bytes(TYPESTORE.serialize_cdr(msg, COMPRESSED_IMAGE))
    msg = t[IMAGE](header=_header(ns, CAMERA_FRAME), height=cfg.height, width=cfg.width, encoding="bgr8",
                   is_bigendian=0, step=cfg.width * 3, data=bgr.reshape(-1))
    return bytes(TYPESTORE.serialize_cdr(msg, IMAGE))


def make_sample_bag(out: Path, cfg: SampleBagConfig | None = None, force: bool = False,
                    progress: bool = True) -> Path:
    """Write the sample night drive to the bag folder `out` (atomically); returns `out`."""
    cfg = cfg or SampleBagConfig()
    try:
        cfg.validate()
    except ValueError as exc:
        raise BagError(str(exc)) from None
    out = Path(out)
    check_output_path(out, force)
    camera = _Camera(_pick_photo(cfg.photo), cfg.width, cfg.height)
    rng = np.random.default_rng(cfg.seed)
    night, lamps = _night(rng), _scene_lights(rng, cfg.lights)
    imu_rng = np.random.default_rng([cfg.seed, 1])

    frame_dt = 1e9 / cfg.fps
    duration = cfg.frames * frame_dt
    events = [(cfg.start_ns + round(i * frame_dt), 0, i) for i in range(cfg.frames)]
    n_imu = int(duration * cfg.imu_rate / 1e9)
    events += [(cfg.start_ns + round(j * 1e9 / cfg.imu_rate), 1, j) for j in range(n_imu)]
    events.sort()
    du_dt = 1.0 / max(duration / 1e9 - 1.0 / cfg.fps, 1e-9)   # drive fraction per second

    with atomic_bag_output(out) as path, storage_writes():  # a full disk: BagWriteError, no OUT
        with Writer(path, version=Writer.VERSION_LATEST, storage_plugin=STORAGES[cfg.storage]) as writer:
            image_type = COMPRESSED_IMAGE if cfg.compressed else IMAGE
            image_conn = writer.add_connection(COMPRESSED_TOPIC if cfg.compressed else IMAGE_TOPIC,
                                               image_type, typestore=TYPESTORE)
            info_conn = writer.add_connection(CAMERA_INFO_TOPIC, CAMERA_INFO, typestore=TYPESTORE)
            imu_conn = writer.add_connection(IMU_TOPIC, IMU, typestore=TYPESTORE)
            bar = tqdm(total=cfg.frames, unit="frame", desc="sample bag", disable=not progress)
            for ns, kind, index in events:
                u = (ns - cfg.start_ns) * du_dt / 1e9
                if kind == 1:
                    msg = _imu_msg(ns, min(u, 1.0), du_dt, imu_rng)
                    writer.write(imu_conn, ns, bytes(TYPESTORE.serialize_cdr(msg, IMU)))
                    continue
                pose = _pose(min(u, 1.0))
                length = float(rng.uniform(3.0, 12.0))
                params = dataclasses.replace(night, blur_kernel=motion_blur_kernel(length, rng, 0.15),
                                             blur_length=length, lights=camera.lights_in_view(pose, lamps))
                low = synthesize(camera.render(pose), params, rng).low
                writer.write(image_conn, ns, _image_bytes(low, ns, cfg))
                info = camera_info_msg(ns, cfg.width, cfg.height)
                writer.write(info_conn, ns, bytes(TYPESTORE.serialize_cdr(info, CAMERA_INFO)))
                bar.update(1)
            bar.close()
    return out
