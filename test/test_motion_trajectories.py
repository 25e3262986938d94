"""Blur kernels from shake and vehicle trajectories: normalised, centred, of the requested length."""
import numpy as np
import pytest

from dap_led_ros.training.motion_trajectories import (
    TrajectoryConfig,
    arc_length,
    rasterise,
    shake_trajectory,
    trajectory_kernel,
    vehicle_trajectory,
)


@pytest.mark.parametrize("length", [2.0, 7.5, 20.0, 40.0])
@pytest.mark.parametrize("make", [shake_trajectory, vehicle_trajectory])
def test_paths_have_the_requested_arc_length_and_kernels_fit_it(make, length):
    rng = np.random.default_rng(int(length * 10))
    pts = make(length, rng, TrajectoryConfig())
    assert arc_length(pts) == pytest.approx(length, rel=1e-9)
    k = rasterise(pts)
    assert k.ndim == 2 and k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1
    assert k.dtype == np.float32 and float(k.sum()) == pytest.approx(1.0, abs=1e-5) and k.min() >= 0
    ys, xs = np.nonzero(k > 0)
    assert max(ys.max() - ys.min(), xs.max() - xs.min()) <= length + 2  # the support spans at most the path
    c = np.arange(k.shape[0]) - k.shape[0] // 2
    assert abs(float((k.sum(axis=0) * c).sum())) < 1e-3 and abs(float((k.sum(axis=1) * c).sum())) < 1e-3


def test_vehicle_paths_are_mostly_horizontal_and_straight():
    rng = np.random.default_rng(0)
    cfg = TrajectoryConfig()
    for _ in range(20):
        k = rasterise(vehicle_trajectory(40.0, rng, cfg))
        ys, xs = np.nonzero(k > 1e-4)
        assert xs.max() - xs.min() >= 30 and ys.max() - ys.min() <= 20


def test_kinds_follow_p_vehicle_and_repeat_by_seed():
    kinds = [trajectory_kernel(10.0, np.random.default_rng(i), TrajectoryConfig(p_vehicle=0.35))[1] for i in range(400)]
    assert 0.28 < kinds.count("vehicle") / len(kinds) < 0.42
    a, _ = trajectory_kernel(25.0, np.random.default_rng(3))
    b, _ = trajectory_kernel(25.0, np.random.default_rng(3))
    assert np.array_equal(a, b)
    with pytest.raises(ValueError):
        trajectory_kernel(0.0, np.random.default_rng(0))
    with pytest.raises(ValueError):
        TrajectoryConfig.from_dict({"p_vehicle": 2})
