"""Draw a clip's top results on a frame, for the optional ~/annotated_image topic.

Kept apart from the node (no rclpy) so that it can be tested on plain arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def result_lines(task_results: Sequence[tuple[str, Sequence[tuple[str, float]]]],
                 per_task: int = 1) -> list[str]:
    """`[(task, [(class, score), ...]), ...]` -> one text line per shown result."""
    lines = []
    for task, top in task_results:
        if not top:
            lines.append(f"{task}: -")
        for name, score in list(top)[:per_task]:
            lines.append(f"{task}: {name} {score:.2f}")
    return lines


def draw_lines(frame: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """A copy of RGB uint8 `frame` (H, W, 3) with `lines` written top left.

    White text on a dark band so that it stays readable on any scene; the
    font scales with the frame height so that it is legible at 1080p and
    still fits at 160x120.
    """
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 frame (H, W, 3), got {frame.shape} {frame.dtype}")
    out = np.ascontiguousarray(frame).copy()
    height = out.shape[0]
    scale = max(0.3, height / 720.0 * 0.8)
    thickness = max(1, round(scale * 2))
    font = cv2.FONT_HERSHEY_SIMPLEX
    y = 0
    for line in lines:
        (width, text_h), baseline = cv2.getTextSize(line, font, scale, thickness)
        line_h = text_h + baseline + 4
        cv2.rectangle(out, (0, y), (width + 8, y + line_h), (0, 0, 0), thickness=-1)
        cv2.putText(out, line, (4, y + text_h + 2), font, scale, (255, 255, 255), thickness,
                    cv2.LINE_AA)
        y += line_h
    return out
