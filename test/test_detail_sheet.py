"""The real-frame detail sheet: crops where the edges are, the input level-matched, sharpness in
each caption (`training/detail_sheet.py`)."""
from __future__ import annotations

import cv2
import numpy as np

from dap_led_ros.training.detail_sheet import CROP, ZOOM, busiest_window, detail_sheet
from dap_led_ros.training.metrics import sharpness


def frame_with_a_sign(h: int = 240, w: int = 320) -> np.ndarray:
    """A flat frame with a checkerboard 'sign' at (150, 200): the only place with edges."""
    img = np.full((h, w, 3), 60, np.uint8)
    yy, xx = np.mgrid[0:80, 0:80]
    img[150:230, 200:280] = np.where(((yy // 10 + xx // 10) % 2)[..., None] == 0, 230, 20).astype(np.uint8)
    return img


def test_the_window_is_where_the_edges_are():
    y0, x0 = busiest_window(frame_with_a_sign())
    # the 128 px window covers the 80 px sign
    assert y0 <= 150 and y0 + CROP >= 230 and x0 <= 200 and x0 + CROP >= 280, (y0, x0)


def test_sheet_rows_show_the_input_level_matched_and_each_output():
    sharp = frame_with_a_sign()
    low = (sharp.astype(np.float32) * 0.1).astype(np.uint8)             # dark and sharp
    blurred = cv2.GaussianBlur(sharp, (0, 0), 3)                        # bright and blurred
    sheet = detail_sheet([("f", low, {"auto-exposure": sharp, "DAP-LED": blurred}, None)],
                         ["auto-exposure", "DAP-LED"])
    assert sheet.shape == (CROP * ZOOM + 2, 3 * CROP * ZOOM, 3) and sheet.dtype == np.uint8
    panels = [sheet[:CROP * ZOOM, k * CROP * ZOOM:(k + 1) * CROP * ZOOM] for k in range(3)]
    # the input panel is brightened to the DAP-LED output's level (not left dark)
    assert abs(float(panels[0][40:].mean()) - float(panels[2][40:].mean())) < 25
    # and blur shows in the figure the captions carry
    assert sharpness(panels[1][40:]) > 1.3 * sharpness(panels[2][40:])
