"""One video stream (a camera, a bag topic, a folder of frames): its state in one object.

A `VideoStream` owns what restoring consecutive frames needs and nobody else touches:
- the fusion history (`TemporalFusion`, while the enhancer's `temporal` is on),
- the CCM heatmap cache (`PriorCache`),
- the exposure rule's steadied gain (`ExposureState`, used while the enhancer's `target_level` is set),
- the restart policy (`RestartPolicy`): the history restarts before a frame whose stamp went back
  or jumped by more than `max_gap_ns`, or whose frame_id changed (counted in `restarts`); the
  fusion itself restarts on a scene cut or a size change (counted in `cuts`),
- the burst of input frames (`BurstMerge`, while the enhancer's `burst` is on): merged before the
  network, restarted by the same policy (checked as each frame enters the network) and by scene cuts,
- counters that survive a restart (`restarts`, `cuts`, `last_restart`).

Frames enter in order: `admit` decides at once whether the history restarts before the frame (the
caller may run the network of the next frame before this one is fused), and the frame's finisher
applies it (`begin`) right before its fusion. Finishers must be called in admission order.
Made by `Enhancer.stream(name)`; a plain `Enhancer.enhance(rgb)` is a still and touches no stream.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from dap_led_ros.runtime.burst_merge import BurstMerge, BurstSettings
from dap_led_ros.runtime.exposure import ExposureState
from dap_led_ros.runtime.prior_cache import PriorCache
from dap_led_ros.runtime.temporal_fusion import FusionSettings, TemporalFusion


class Restorer(Protocol):
    """What a stream needs of its Enhancer (which imports this module, not the other way round)."""

    def enhance_batch_deferred(self, frames: list[np.ndarray], streams: list, stamps: list,
                               frame_ids: list) -> list[Callable[[], np.ndarray]]: ...

DEFAULT_MAX_GAP_S = 1.0  # a longer pause between two frames restarts the history


def time_jump(last_ns: int, now_ns: int, max_gap_ns: int, clock: str = "stamp") -> str:
    """Why a stream's history must restart between frames at `last_ns` and `now_ns` ("" to keep
    it): its `clock` went back, or moved on by more than `max_gap_ns`."""
    if now_ns < last_ns:
        return f"{clock} went back by {(last_ns - now_ns) / 1e9:.3f} s"
    if now_ns - last_ns > max_gap_ns:
        return f"gap of {(now_ns - last_ns) / 1e9:.3f} s"
    return ""


@dataclass(frozen=True)
class RestartPolicy:
    """When a stream's history restarts before a frame."""

    max_gap_ns: int = round(DEFAULT_MAX_GAP_S * 1e9)
    clock: str = "stamp"  # what the times are, for the reason text ("stamp", "log time")

    def reason(self, last: tuple[int | None, str] | None, stamp_ns: int | None, frame_id: str) -> str:
        """Why the history must restart before a frame at (`stamp_ns`, `frame_id`) ("" to keep it);
        `last` is the (stamp, frame_id) of the frame before, None before the first one."""
        if last is None:
            return ""
        last_ns, last_frame_id = last
        if frame_id != last_frame_id:
            return f"frame_id changed from '{last_frame_id}' to '{frame_id}'"
        if stamp_ns is None or last_ns is None:
            return ""
        return time_jump(last_ns, stamp_ns, self.max_gap_ns, self.clock)


class VideoStream:
    """A stream's fusion history, exposure gain, heatmap cache, restart policy and counters (thread-safe)."""

    def __init__(self, enhancer: Restorer, name: str, fusion: FusionSettings | None,
                 prior: PriorCache, policy: RestartPolicy, burst: BurstSettings | None = None) -> None:
        self.name = name
        self.policy = policy
        self.prior = prior
        self._enhancer = enhancer
        self._settings = fusion  # None: restored frames are not fused (the enhancer's temporal off)
        self._fusion: TemporalFusion | None = None
        self.exposure = ExposureState()  # the exposure rule's gain, steadied over this stream's frames
        self._last: tuple[int | None, str] | None = None  # (stamp, frame_id) of the last frame admitted
        self._lock = threading.Lock()
        self.restarts = 0         # history restarts the policy called for (time, frame_id)
        self.last_restart = ""    # the reason of the latest one
        self._cuts_before = 0     # scene cuts of the histories before the current one
        # The input burst (None: the network sees each frame as it came) and the position of the
        # last frame merged into it; touched only where frames enter the network, in order.
        self._burst = BurstMerge(burst) if burst is not None else None
        self._burst_last: tuple[int | None, str] | None = None
        self._burst_lock = threading.Lock()

    # ---------------------------------------------------------------- restoring

    def enhance(self, rgb: np.ndarray, stamp_ns: int | None = None, frame_id: str = "") -> np.ndarray:
        """The restored frame, fused with this stream's history (when fusion is on)."""
        return self.enhance_deferred(rgb, stamp_ns, frame_id)()

    def enhance_deferred(self, rgb: np.ndarray, stamp_ns: int | None = None,
                         frame_id: str = "") -> Callable[[], np.ndarray]:
        """Runs the network now; the returned finisher fuses and converts (call them in order)."""
        return self._enhancer.enhance_batch_deferred([rgb], [self], [stamp_ns], [frame_id])[0]

    # ---------------------------------------------------------------- used by the Enhancer

    def admit(self, stamp_ns: int | None = None, frame_id: str = "") -> str:
        """Enter the next frame; the restart reason that its finisher will apply ("" for none)."""
        with self._lock:
            reason = self.policy.reason(self._last, stamp_ns, frame_id)
            self._last = (stamp_ns, frame_id)
        return reason

    def begin(self, reason: str) -> None:
        """A frame's finish starts: apply the restart that `admit` decided for it."""
        if reason:
            with self._lock:
                self._drop_history()
                self.restarts += 1
                self.last_restart = reason

    def fuse(self, hwc: np.ndarray) -> np.ndarray:
        """H x W x 3 float [0, 1] -> the frame fused with the history (float32)."""
        assert self._settings is not None, "fusion is off for this stream"
        with self._lock:
            if self._fusion is None:
                self._fusion = TemporalFusion(self._settings)
            frame = np.empty(hwc.shape, np.float32)  # contiguous, clipped: one pass over a transposed view
            np.clip(hwc, 0.0, 1.0, out=frame)
            return self._fusion.fuse(frame)

    @property
    def fuses(self) -> bool:
        return self._settings is not None

    @property
    def merges(self) -> bool:
        """Whether this stream merges its input frames before the network (burst)."""
        return self._burst is not None

    def merge_input(self, rgb: np.ndarray, stamp_ns: int | None = None, frame_id: str = "") -> np.ndarray:
        """H x W x 3 uint8 -> the burst merged up to this frame (H x W x 3 float32 sRGB in [0, 1]),
        restarted first when the restart policy calls for it."""
        assert self._burst is not None, "burst is off for this stream"
        with self._burst_lock:
            if self.policy.reason(self._burst_last, stamp_ns, frame_id):
                self._burst.reset()
            self._burst_last = (stamp_ns, frame_id)
            return self._burst.merge(rgb)

    def input_state(self) -> tuple:
        """The burst's state, to put back with `restore_input_state` when a network call fails."""
        with self._burst_lock:
            return self._burst_last, self._burst.state() if self._burst is not None else None

    def restore_input_state(self, state: tuple) -> None:
        with self._burst_lock:
            self._burst_last = state[0]
            if self._burst is not None:
                self._burst.set_state(state[1])

    # ---------------------------------------------------------------- state

    def restart(self) -> None:
        """Forget the history and the last frame's position (a new activation, a new recording, a
        frame that failed): the next frame starts a history. Counters are kept."""
        with self._lock:
            self._drop_history()
            self._last = None
        with self._burst_lock:
            if self._burst is not None:
                self._burst.reset()
            self._burst_last = None

    def _drop_history(self) -> None:
        self.exposure.reset()
        if self._fusion is not None:
            self._cuts_before += self._fusion.resets
        self._fusion = None

    @property
    def history(self) -> TemporalFusion | None:
        """The current fusion history (None before the first fused frame and after a restart)."""
        return self._fusion

    @property
    def cuts(self) -> int:
        """Scene cuts the fusion found, over every history of this stream."""
        fusion = self._fusion
        return self._cuts_before + (fusion.resets if fusion is not None else 0)

    @property
    def burst_weight(self) -> float:
        """The earlier frames' share in the last merged input (0 without a burst)."""
        return self._burst.last_weight if self._burst is not None else 0.0

    @property
    def weight(self) -> float:
        """The history's weight in the last fused frame (0 without a history)."""
        return self._fusion.last_weight if self._fusion is not None else 0.0

    @property
    def gain(self) -> float:
        """The exposure gain of the last fused frame (1 without a history)."""
        return self._fusion.last_gain if self._fusion is not None else 1.0
