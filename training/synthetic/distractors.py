"""Scene distractors of the untrimmed sessions: things that move but are no listed class.

The task gate must say `none` to more than an idle actor: a robot's camera
sees people walk through, objects move, itself pan and zoom, lights change
and things pass close in front of it. Each distractor is painted over a
session's rendered frames [start, end) while the actor idles (so the labels
stay exact), and every one is drawn from distributions that know nothing
of the classes:

- `walker`: another person walks across the frame, in front of the actor;
- `object`: a ball or a box crosses the frame (thrown, slid, carried);
- `camera`: the camera pans and zooms in and back (nearest-pixel resampling);
- `light`: the lighting dims or brightens and changes tint, then recovers;
- `occlusion`: a large soft dark shape (a shoulder, a hand near the lens)
  slides over part of the view and away.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from training.synthetic.backdrops import _hsv, box_blur
from training.synthetic.figure import Canvas, View, draw_figure
from training.synthetic.motions import idle, sample_params, walk

SCENE_DISTRACTORS = ("walker", "object", "camera", "light", "occlusion")


def paint(frames: np.ndarray, name: str, start: int, end: int, rng: np.random.Generator,
          fps: float) -> None:
    """Paint distractor `name` over frames[start:end] (uint8 (T, H, W, 3)), in place."""
    n = end - start
    if n < 2:
        return
    window = frames[start:end]
    if name == "walker":
        _walker(window, rng, fps)
    elif name == "object":
        _object(window, rng)
    elif name == "camera":
        _camera(window, rng)
    elif name == "light":
        _light(window, rng)
    elif name == "occlusion":
        _occlusion(window, rng)
    else:
        raise ValueError(f"unknown scene distractor {name!r}; known: {list(SCENE_DISTRACTORS)}")


def _bump(n: int) -> np.ndarray:
    """0 -> 1 -> 0 over n frames (half a sine): a change that comes and goes."""
    return np.sin(np.pi * np.linspace(0.0, 1.0, n)).astype(np.float32)


def _walker(window: np.ndarray, rng: np.random.Generator, fps: float) -> None:
    from training.synthetic.scene import random_actor  # scene imports this module's users

    n, height, width = window.shape[:3]
    actor = random_actor(rng)
    params = sample_params(rng)
    # from a passer-by far behind (whole body) to one close to the lens (chest up); the
    # head (0.92 body units up) lands in the top half of the frame
    scale = height * float(rng.uniform(0.6, 2.2))
    direction = 1 if rng.random() < 0.5 else -1
    xs = np.linspace(-0.3 * width, 1.3 * width, n)[::direction]
    floor = height * float(rng.uniform(0.1, 0.45)) + 0.92 * scale
    for t in range(n):
        stride = walk(params.phase + t / fps * params.rate * 0.9, params)
        pose = idle(dataclasses.replace(stride, fwd=0.0), t / fps, params)
        view = View(scale, (float(xs[t]), floor), direction * math.pi / 2, 0.6, 6.0)
        canvas = Canvas(window[t].astype(np.float32))
        draw_figure(canvas, pose, actor.body, actor.palette, view, shadow=False)
        window[t] = np.clip(canvas.image + 0.5, 0, 255).astype(np.uint8)


def _object(window: np.ndarray, rng: np.random.Generator) -> None:
    n, height, width = window.shape[:3]
    size = height * float(rng.uniform(0.08, 0.25))
    color = _hsv(rng.random(), rng.uniform(0.3, 1.0), rng.uniform(0.3, 1.0))
    y0, y1 = rng.uniform(0.1, 0.9, 2) * height
    direction = 1 if rng.random() < 0.5 else -1
    xs = np.linspace(-size, width + size, n)[::direction]
    hop = rng.uniform(0.0, 0.3) * height  # a thrown ball arcs; a slid box does not
    round_ = rng.random() < 0.5
    for t in range(n):
        u = t / max(n - 1, 1)
        y = y0 + (y1 - y0) * u - hop * math.sin(math.pi * u)
        canvas = Canvas(window[t].astype(np.float32))
        if round_:
            canvas.ellipse((float(xs[t]), y), size, size, color, figure=False)
        else:
            x = float(xs[t])
            canvas.polygon(np.array([[x - size, y - size], [x + size, y - size],
                                     [x + size, y + size], [x - size, y + size]]), color,
                           figure=False)
        window[t] = np.clip(canvas.image + 0.5, 0, 255).astype(np.uint8)


def _camera(window: np.ndarray, rng: np.random.Generator) -> None:
    n, height, width = window.shape[:3]
    bump = _bump(n)
    zoom = 1.0 + float(rng.uniform(0.1, 0.45)) * bump
    pan_x = float(rng.uniform(-0.15, 0.15)) * width * bump
    pan_y = float(rng.uniform(-0.08, 0.08)) * height * bump
    ys, xs = np.arange(height, dtype=np.float32), np.arange(width, dtype=np.float32)
    cy, cx = (height - 1) / 2, (width - 1) / 2
    source = window.copy()
    for t in range(n):
        rows = np.clip(np.round(cy + (ys - cy) / zoom[t] + pan_y[t]), 0, height - 1).astype(int)
        cols = np.clip(np.round(cx + (xs - cx) / zoom[t] + pan_x[t]), 0, width - 1).astype(int)
        window[t] = source[t][rows][:, cols]


def _light(window: np.ndarray, rng: np.random.Generator) -> None:
    n = window.shape[0]
    bump = _bump(n)
    depth = float(rng.choice([-1, 1]) * rng.uniform(0.25, 0.6))
    tint = rng.uniform(-0.15, 0.15, 3).astype(np.float32)
    for t in range(n):
        gain = (1.0 + depth * bump[t]) * (1.0 + tint * bump[t])
        window[t] = np.clip(window[t].astype(np.float32) * gain + 0.5, 0, 255).astype(np.uint8)


def _occlusion(window: np.ndarray, rng: np.random.Generator) -> None:
    n, height, width = window.shape[:3]
    bump = _bump(n)
    side = 1 if rng.random() < 0.5 else -1
    reach = float(rng.uniform(0.3, 0.65)) * width  # how far into the view it comes
    ry = height * float(rng.uniform(0.5, 1.0))
    cy = height * float(rng.uniform(0.3, 0.9))
    color = _hsv(rng.random(), rng.uniform(0.0, 0.5), rng.uniform(0.05, 0.35))
    for t in range(n):
        edge = reach * float(bump[t])
        cx = (edge - 0.5 * width) if side > 0 else (width - edge + 0.5 * width)
        canvas = Canvas(window[t].astype(np.float32))
        canvas.ellipse((cx, cy), 0.5 * width, ry, color, figure=False)
        # out of focus: it is far nearer the lens than the scene
        window[t] = np.clip(box_blur(canvas.image, max(1, height // 30)) + 0.5, 0,
                            255).astype(np.uint8)
