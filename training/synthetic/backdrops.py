"""Backdrops of the synthetic scenes: outdoor places (sky, horizon, trees), indoor walls,
and the colour and texture helpers they are painted with (scene.py frames and renders)."""

from __future__ import annotations

import colorsys

import numpy as np

from training.synthetic.figure import Canvas, Color


def _hsv(h: float, s: float, v: float) -> Color:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return (255.0 * r, 255.0 * g, 255.0 * b)


def smooth_noise(rng: np.random.Generator, height: int, width: int, cell: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1] (bilinear upsampling of a coarse grid): textures, clouds."""
    gh, gw = height // cell + 2, width // cell + 2
    grid = rng.uniform(-1, 1, (gh, gw)).astype(np.float32)
    ys, xs = np.arange(height) / cell, np.arange(width) / cell
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None].astype(np.float32), (xs - x0)[None, :].astype(np.float32)
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _scaled(color: Color, factor: float) -> Color:
    """A colour darkened (factor < 1) or lightened, channel by channel."""
    return (color[0] * factor, color[1] * factor, color[2] * factor)


def _gradient(height: int, width: int, top: Color, bottom: Color) -> np.ndarray:
    w = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    column = np.asarray(top, np.float32) * (1 - w) + np.asarray(bottom, np.float32) * w
    return np.repeat(column, width, axis=1)


def outdoor_background(rng: np.random.Generator, height: int, width: int,
                       person_px: float) -> tuple[np.ndarray, float]:
    """Sky, horizon clutter, textured ground; returns the image and the horizon row."""
    sky_h = rng.uniform(0.5, 0.68)
    top = _hsv(rng.uniform(0.5, 0.7) if rng.random() < 0.7 else rng.uniform(0.0, 0.12),
               rng.uniform(0.1, 0.6), rng.uniform(0.55, 0.95))
    horizon = rng.uniform(0.3, 0.5) * height
    img = _gradient(height, width, top, _hsv(rng.uniform(0.5, 0.65), 0.1, sky_h + 0.3))
    clouds = smooth_noise(rng, height, width, max(height // 4, 4))
    img += (np.clip(clouds, 0.2, 1.0) - 0.2)[..., None] * 40.0 * rng.uniform(0.0, 1.0)
    canvas = Canvas(img, antialias=True)
    for _ in range(int(rng.integers(2, 7))):  # buildings and hills on the horizon
        x, w = rng.uniform(0, width), rng.uniform(0.1, 0.4) * person_px * 3
        h = rng.uniform(0.3, 1.6) * person_px
        col = _hsv(rng.random(), rng.uniform(0.0, 0.4), rng.uniform(0.3, 0.8))
        if rng.random() < 0.5:
            canvas.polygon(np.array([[x, horizon - h], [x + w, horizon - h], [x + w, horizon + 2],
                                     [x, horizon + 2]]), col, figure=False)
        else:
            canvas.ellipse((x, horizon + 2), w, h * 0.5, col, figure=False)
    ground_top = _hsv(rng.choice([0.08, 0.1, 0.25, 0.3, 0.6]), rng.uniform(0.1, 0.6),
                      rng.uniform(0.3, 0.7))
    ground = _gradient(height, width, ground_top, _scaled(ground_top, 0.75))
    texture = smooth_noise(rng, height, width, 6) * 0.6 + smooth_noise(rng, height, width, 2) * 0.4
    ground += texture[..., None] * rng.uniform(3, 12)
    rows = np.arange(height)[:, None, None]
    img = np.where(rows >= horizon, ground, canvas.image).astype(np.float32)
    canvas = Canvas(img, antialias=True)
    floor = height * 0.95
    for _ in range(int(rng.integers(2, 7))):  # trees, bushes and poles at assorted depths
        x = rng.uniform(0, width)
        base = rng.uniform(horizon, floor)
        size = person_px * rng.uniform(0.3, 1.0) * (base - horizon + 8) / (floor - horizon + 8)
        kind = rng.random()
        leaf = _hsv(rng.uniform(0.2, 0.4), rng.uniform(0.3, 0.8), rng.uniform(0.2, 0.6))
        if kind < 0.5:
            canvas.capsule((x, base), (x, base - size), size * 0.06, size * 0.04,
                           _hsv(0.07, 0.5, 0.3), figure=False)
            canvas.ellipse((x, base - size), size * 0.35, size * 0.45, leaf, figure=False)
        elif kind < 0.8:
            canvas.ellipse((x, base - size * 0.15), size * 0.4, size * 0.2, leaf, figure=False)
        else:
            canvas.capsule((x, base), (x, base - size * 1.5), 1.0, 1.0,
                           _hsv(rng.random(), 0.2, rng.uniform(0.2, 0.7)), figure=False)
    # Depth of field: the scene behind the actor is soft, the actor sharp. Without it the
    # clutter's edges compete with the limbs, and a small network learns neither.
    return box_blur(canvas.image, round(rng.uniform(1.0, 2.5) * height / 120)), float(horizon)


def indoor_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A lit wall with a door or window, pictures and shelves: a static indoor set."""
    wall = _hsv(rng.random(), rng.uniform(0.05, 0.35), rng.uniform(0.5, 0.9))
    img = _gradient(height, width, wall, _scaled(wall, rng.uniform(0.7, 1.0)))
    # A lamp's pool of light somewhere on the wall.
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    cx, cy = rng.uniform(0, width), rng.uniform(0, height * 0.6)
    light = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * (0.4 * width) ** 2))
    img *= (0.75 + 0.4 * light)[..., None]
    img += smooth_noise(rng, height, width, 3)[..., None] * 4.0
    canvas = Canvas(img, antialias=True)
    for _ in range(int(rng.integers(2, 6))):
        w, h = rng.uniform(0.08, 0.4) * width, rng.uniform(0.1, 0.6) * height
        x, y = rng.uniform(-0.1, 1.0) * width, rng.uniform(-0.1, 0.8) * height
        rect = np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]])
        frame_col = _hsv(rng.random(), rng.uniform(0.0, 0.6), rng.uniform(0.1, 0.9))
        canvas.polygon(rect, frame_col, figure=False)
        inner = rect + np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]]) * min(w, h) * 0.1
        canvas.polygon(inner, _hsv(rng.random(), rng.uniform(0.0, 0.7), rng.uniform(0.2, 1.0)),
                       figure=False)
    if rng.random() < 0.6:  # a shelf or desk edge along the bottom
        y = rng.uniform(0.75, 0.95) * height
        canvas.polygon(np.array([[0, y], [width, y], [width, height], [0, height]]),
                       _hsv(rng.uniform(0.05, 0.12), rng.uniform(0.2, 0.6), rng.uniform(0.2, 0.6)),
                       figure=False)
    return box_blur(canvas.image, round(rng.uniform(0.5, 2.0) * height / 120))


def box_blur(image: np.ndarray, radius: int) -> np.ndarray:
    """Separable box blur by running sums (edges clamped); radius 0 returns the image."""
    if radius <= 0:
        return image
    out = image
    for axis in (0, 1):
        pad = [(0, 0)] * image.ndim
        pad[axis] = (radius + 1, radius)
        sums = np.cumsum(np.pad(out, pad, mode="edge"), axis=axis, dtype=np.float64)
        size = out.shape[axis]
        upper = np.take(sums, np.arange(2 * radius + 1, 2 * radius + 1 + size), axis=axis)
        lower = np.take(sums, np.arange(0, size), axis=axis)
        out = ((upper - lower) / (2 * radius + 1)).astype(np.float32)
    return out
