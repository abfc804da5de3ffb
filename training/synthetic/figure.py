"""A procedurally drawn articulated figure, rasterised with numpy.

The figure is a 3D stick-and-capsule body (head, torso, arms with elbows and
hands, legs with knees and feet) posed by a handful of joint parameters,
rotated to a viewpoint and projected with a mild perspective, so that one set
of motions looks different from the side, from the front and from close up.
Arms are posed by a hand target and two-link inverse kinematics because
gestures are naturally described by where the hand goes; legs by joint angles
because gait and squats are naturally described by bending.

Rasterisation evaluates a distance field per primitive inside its bounding
box only (no per-pixel Python loops): a capsule is a thick, optionally tapered
segment, a convex polygon is the max of its edge half-planes. Coverage is the
anti-aliased `r + 0.5 - distance`, or a hard threshold when anti-aliasing is
off. The canvas also accumulates the figure's coverage as a mask, which tests
use as an oracle foreground.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Color = tuple[float, float, float]
Vec3 = tuple[float, float, float]


class Canvas:
    """A float RGB image (0..255) plus an optional coverage mask that primitives blend into."""

    def __init__(self, image: np.ndarray, antialias: bool = True, track_mask: bool = False):
        self.image = image
        self.height, self.width = image.shape[:2]
        self.antialias = antialias
        self.mask = np.zeros(image.shape[:2], np.float32) if track_mask else None

    def _box(self, x0: float, x1: float, y0: float, y1: float) -> tuple[int, int, int, int] | None:
        ix0, iy0 = max(math.floor(x0), 0), max(math.floor(y0), 0)
        ix1, iy1 = min(math.ceil(x1) + 1, self.width), min(math.ceil(y1) + 1, self.height)
        if ix0 >= ix1 or iy0 >= iy1:
            return None
        return ix0, ix1, iy0, iy1

    def _coverage(self, signed_distance: np.ndarray) -> np.ndarray:
        # Pixel centres sit at integer coordinates; +0.5 gives a one-pixel ramp at the edge.
        if self.antialias:
            return np.clip(0.5 - signed_distance, 0.0, 1.0)
        return (signed_distance <= 0).astype(np.float32)

    def _blend(self, box: tuple[int, int, int, int], cov: np.ndarray, color: Color,
               alpha: float, figure: bool) -> None:
        x0, x1, y0, y1 = box
        region = self.image[y0:y1, x0:x1]
        weight = cov[..., None] * alpha
        region += weight * (np.asarray(color, np.float32) - region)
        if figure and self.mask is not None:
            np.maximum(self.mask[y0:y1, x0:x1], cov * alpha, out=self.mask[y0:y1, x0:x1])

    def capsule(self, a: tuple[float, float], b: tuple[float, float], ra: float, rb: float,
                color: Color, alpha: float = 1.0, figure: bool = True) -> None:
        """A segment a->b of radius ra at a and rb at b (a disk when a == b)."""
        rmax = max(ra, rb) + 1.0
        box = self._box(min(a[0], b[0]) - rmax, max(a[0], b[0]) + rmax,
                        min(a[1], b[1]) - rmax, max(a[1], b[1]) + rmax)
        if box is None:
            return
        x0, x1, y0, y1 = box
        px = np.arange(x0, x1, dtype=np.float32)[None, :] - a[0]
        py = np.arange(y0, y1, dtype=np.float32)[:, None] - a[1]
        dx, dy = b[0] - a[0], b[1] - a[1]
        length2 = dx * dx + dy * dy
        if length2 < 1e-9:
            t = np.zeros((1, 1), np.float32)
        else:
            t = np.clip((px * dx + py * dy) / length2, 0.0, 1.0)
        dist = np.sqrt((px - t * dx) ** 2 + (py - t * dy) ** 2)
        self._blend(box, self._coverage(dist - (ra + (rb - ra) * t)), color, alpha, figure)

    def disk(self, c: tuple[float, float], r: float, color: Color, alpha: float = 1.0,
             figure: bool = True) -> None:
        self.capsule(c, c, r, r, color, alpha, figure)

    def polygon(self, points: np.ndarray, color: Color, alpha: float = 1.0,
                figure: bool = True) -> None:
        """A convex polygon (N, 2) in either winding order."""
        pts = [(float(x), float(y)) for x, y in points]
        xs_, ys_ = [p[0] for p in pts], [p[1] for p in pts]
        box = self._box(min(xs_) - 1, max(xs_) + 1, min(ys_) - 1, max(ys_) + 1)
        if box is None:
            return
        x0, x1, y0, y1 = box
        xs = np.arange(x0, x1, dtype=np.float32)[None, :]
        ys = np.arange(y0, y1, dtype=np.float32)[:, None]
        edges = list(zip(pts, pts[1:] + pts[:1]))
        area = sum(p[0] * q[1] - q[0] * p[1] for p, q in edges)
        sign = 1.0 if area > 0 else -1.0
        sd = np.full((y1 - y0, x1 - x0), -np.inf, np.float32)
        for p, q in edges:
            ex, ey = q[0] - p[0], q[1] - p[1]
            norm = math.hypot(ex, ey)
            if norm < 1e-9:
                continue
            # Outward normal; distance > 0 outside this edge.
            nx, ny = sign * ey / norm, -sign * ex / norm
            np.maximum(sd, (xs - p[0]) * nx + (ys - p[1]) * ny, out=sd)
        self._blend(box, self._coverage(sd), color, alpha, figure)

    def ellipse(self, c: tuple[float, float], rx: float, ry: float, color: Color,
                alpha: float = 1.0, figure: bool = False) -> None:
        box = self._box(c[0] - rx - 1, c[0] + rx + 1, c[1] - ry - 1, c[1] + ry + 1)
        if box is None or rx <= 0 or ry <= 0:
            return
        x0, x1, y0, y1 = box
        u = (np.arange(x0, x1, dtype=np.float32)[None, :] - c[0]) / rx
        v = (np.arange(y0, y1, dtype=np.float32)[:, None] - c[1]) / ry
        sd = (np.sqrt(u * u + v * v) - 1.0) * min(rx, ry)
        self._blend(box, self._coverage(sd), color, alpha, figure)


@dataclass(frozen=True)
class Body:
    """Proportions in units of standing height (about 1.0 from sole to crown)."""

    head_r: float = 0.068
    neck: float = 0.045
    torso: float = 0.30
    shoulder_half: float = 0.11
    hip_half: float = 0.06
    upper_arm: float = 0.165
    forearm: float = 0.15
    thigh: float = 0.245
    shin: float = 0.235
    foot: float = 0.075
    # Limbs a little thicker than life: at 112 pixels a forearm must stay a few pixels wide.
    arm_r: float = 0.035
    leg_r: float = 0.045
    torso_r: float = 0.075
    hand_r: float = 0.042


@dataclass(frozen=True)
class Palette:
    """Colours of one actor (RGB 0..255); drawn at random, independently of any class."""

    skin: Color
    hair: Color
    shirt: Color
    pants: Color
    shoes: Color


@dataclass(frozen=True)
class Pose:
    """One instant of a motion, in the figure's own frame (x left, y up, z forward).

    `fwd`/`side`: root displacement along/across the facing direction; `lift`:
    height above the ground contact (jumps); `yaw`: extra rotation added to the
    viewpoint's; `pitch`: forward lean of the torso at the hips. Hand targets
    are relative to each shoulder in upright body axes (so hanging arms hang
    down even when the torso leans). Legs: hip flexion (forward), knee flexion,
    abduction (outward), radians. `plant` (0..1) keeps the feet where they are
    while the hips move (squats, sitting); walking sets it to 0 and moves `fwd`.
    """

    fwd: float = 0.0
    side: float = 0.0
    lift: float = 0.0
    yaw: float = 0.0
    pitch: float = 0.0
    hand_l: Vec3 = (0.015, -0.30, 0.02)
    hand_r: Vec3 = (-0.015, -0.30, 0.02)
    leg_l: Vec3 = (0.0, 0.0, 0.03)
    leg_r: Vec3 = (0.0, 0.0, 0.03)
    head_pitch: float = 0.0
    plant: float = 1.0


@dataclass(frozen=True)
class View:
    """How the figure lands on screen.

    `scale`: pixels per body unit; `ground`: screen (x, y) of the root's ground
    point; `eye`: camera height in body units (the perspective pivot);
    `distance`: camera distance in body units (smaller = stronger perspective);
    `yaw`: the viewpoint's rotation of the figure (0 = facing the camera).
    """

    scale: float
    ground: tuple[float, float]
    yaw: float = 0.0
    eye: float = 0.6
    distance: float = 8.0


def _ik_elbow(shoulder: np.ndarray, hand: np.ndarray, upper: float, fore: float,
              pole: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two-link IK: elbow position on the side of `pole`; the hand is clamped to reach."""
    axis = hand - shoulder
    dist = float(np.linalg.norm(axis))
    reach = (upper + fore) * 0.999
    if dist < 1e-6:
        axis, dist = np.array([0.0, -1.0, 0.0]), 1e-6
    u = axis / dist
    if dist > reach:
        hand, dist = shoulder + u * reach, reach
    dist = max(dist, abs(upper - fore) + 1e-4)
    along = (upper * upper - fore * fore + dist * dist) / (2 * dist)
    height = math.sqrt(max(upper * upper - along * along, 0.0))
    perp = pole - u * float(pole @ u)
    n = float(np.linalg.norm(perp))
    perp = perp / n if n > 1e-6 else np.array([0.0, 0.0, -1.0])
    return shoulder + u * along + perp * height, hand


def _rot_x(v: np.ndarray, angle: float) -> np.ndarray:
    """Rotate about the body's x axis: positive angle tips +y towards +z (forward)."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([v[0], c * v[1] - s * v[2], s * v[1] + c * v[2]])


def joints(pose: Pose, body: Body) -> dict[str, np.ndarray]:
    """3D joint positions in the figure frame, feet on the ground (y = 0) plus `lift`."""
    j: dict[str, np.ndarray] = {"pelvis": np.zeros(3)}
    for side, sign, leg in (("l", 1.0, pose.leg_l), ("r", -1.0, pose.leg_r)):
        flex, knee, abd = leg
        hip = np.array([sign * body.hip_half, 0.0, 0.0])
        down = np.array([sign * math.sin(abd), -math.cos(abd), 0.0])
        k = hip + body.thigh * _rot_x(down, -flex)  # flexion swings the thigh forward
        shin_angle = flex - knee
        ankle = k + body.shin * _rot_x(down, -shin_angle)
        # The ankle follows the shin only halfway backwards, so feet stay near flat in a squat.
        foot_angle = shin_angle if shin_angle > 0 else 0.5 * shin_angle
        toe = ankle + body.foot * _rot_x(np.array([0.0, 0.0, 1.0]), -foot_angle)
        j[f"hip_{side}"], j[f"knee_{side}"] = hip, k
        j[f"ankle_{side}"], j[f"toe_{side}"] = ankle, toe
    spine = _rot_x(np.array([0.0, 1.0, 0.0]), pose.pitch)
    chest = spine * body.torso
    j["chest"] = chest
    j["neck"] = chest + spine * body.neck
    j["head"] = j["neck"] + _rot_x(spine, pose.head_pitch) * body.head_r * 0.95
    for side, sign, target in (("l", 1.0, pose.hand_l), ("r", -1.0, pose.hand_r)):
        shoulder = chest + np.array([sign * body.shoulder_half, -0.01, 0.0])
        pole = np.array([sign * 0.5, -1.0, -0.45])
        elbow, hand = _ik_elbow(shoulder, shoulder + np.asarray(target), body.upper_arm,
                                body.forearm, pole)
        j[f"shoulder_{side}"], j[f"elbow_{side}"], j[f"hand_{side}"] = shoulder, elbow, hand
    # Ground contact: the lowest foot point rests on y = 0, then the jump lifts it.
    lowest = min(float(j[k][1]) for k in ("ankle_l", "ankle_r", "toe_l", "toe_r"))
    support = lowest - body.leg_r * 0.6
    feet_z = (float(j["ankle_l"][2]) + float(j["ankle_r"][2])) / 2
    offset = np.array([pose.side, -support + pose.lift, pose.fwd - pose.plant * feet_z])
    return {name: p + offset for name, p in j.items()}


def project(points: dict[str, np.ndarray], view: View, yaw: float
            ) -> tuple[dict[str, tuple[float, float]], dict[str, float], dict[str, float]]:
    """Rotate by yaw about the root, then perspective-project about the camera height.

    Returns screen points, per-point depth (towards the camera is larger) and
    per-point pixel scale (for radii).
    """
    c, s = math.cos(yaw), math.sin(yaw)
    screen, depth, scale = {}, {}, {}
    for name, (x, y, z) in points.items():
        xr, zr = c * x + s * z, -s * x + c * z
        p = view.distance / max(view.distance - zr, 0.2)
        screen[name] = (view.ground[0] + view.scale * xr * p,
                        view.ground[1] - view.scale * (view.eye + (y - view.eye) * p))
        depth[name], scale[name] = zr, view.scale * p
    return screen, depth, scale


def draw_figure(canvas: Canvas, pose: Pose, body: Body, palette: Palette, view: View,
                shadow: bool = True) -> None:
    """Pose, project and paint the figure back to front (painter's algorithm by depth)."""
    yaw = view.yaw + pose.yaw
    pts3 = joints(pose, body)
    # Hair cap behind and above the face, and a nose in front: front, back and
    # profile views then differ, which a turn needs.
    head = pts3["head"]
    pts3["hair"] = head + np.array([0.0, 0.2, -0.35]) * body.head_r
    pts3["nose"] = head + np.array([0.0, -0.1, 1.0]) * body.head_r
    pts3["hip_mid"] = (pts3["hip_l"] + pts3["hip_r"]) / 2
    pts3["shoulder_mid"] = (pts3["shoulder_l"] + pts3["shoulder_r"]) / 2
    scr, dep, px = project(pts3, view, yaw)
    if shadow:
        feet = (pts3["ankle_l"] + pts3["ankle_r"]) / 2 * np.array([1.0, 0.0, 1.0])
        gx, gy = project({"g": feet}, view, yaw)[0]["g"]
        fade = 1.0 / (1.0 + 4.0 * pose.lift)
        canvas.ellipse((gx, gy), view.scale * 0.2, view.scale * 0.035, (0, 0, 0),
                       alpha=0.3 * fade)

    parts: list[tuple[float, int, tuple]] = []

    def limb(a: str, b: str, r: float, color: Color, bias: float = 0.0,
             end_r: float | None = None) -> None:
        d = (dep[a] + dep[b]) / 2 + bias
        ra, rb = r * px[a], (end_r if end_r is not None else r) * px[b]
        parts.append((d, len(parts), ("capsule", scr[a], scr[b], ra, rb, color)))

    for side in ("l", "r"):
        limb(f"hip_{side}", f"knee_{side}", body.leg_r, palette.pants, 0.001, body.leg_r * 0.9)
        limb(f"knee_{side}", f"ankle_{side}", body.leg_r * 0.9, palette.pants, 0.002,
             body.leg_r * 0.75)
        limb(f"ankle_{side}", f"toe_{side}", body.leg_r * 0.65, palette.shoes, 0.003)
        limb(f"shoulder_{side}", f"elbow_{side}", body.arm_r * 1.15, palette.shirt, 0.02,
             body.arm_r)
        limb(f"elbow_{side}", f"hand_{side}", body.arm_r, palette.skin, 0.021, body.arm_r * 0.85)
        limb(f"hand_{side}", f"hand_{side}", body.hand_r, palette.skin, 0.022)
    limb("hip_l", "hip_r", body.leg_r * 1.1, palette.pants, -0.002)
    limb("hip_mid", "shoulder_mid", body.torso_r, palette.shirt, 0.0, body.torso_r * 1.1)
    quad = [scr["shoulder_l"], scr["shoulder_r"], scr["hip_r"], scr["hip_l"]]
    parts.append((dep["chest"] * 0.5 + 0.0005, len(parts), ("polygon", quad, palette.shirt)))
    limb("chest", "neck", body.arm_r * 1.1, palette.skin, -0.001)
    # The head's pieces keep their true depth order among themselves, above the neck.
    head_bias = 0.05
    parts.append((dep["head"] + head_bias, len(parts),
                  ("disk", scr["head"], body.head_r * px["head"], palette.skin)))
    parts.append((dep["hair"] + head_bias, len(parts),
                  ("disk", scr["hair"], body.head_r * 0.9 * px["hair"], palette.hair)))
    if dep["nose"] > dep["head"] + 0.2 * body.head_r:
        parts.append((dep["nose"] + head_bias, len(parts),
                      ("disk", scr["nose"], body.head_r * 0.3 * px["nose"], palette.skin)))
    for _, _, item in sorted(parts, key=lambda p: (p[0], p[1])):
        kind = item[0]
        if kind == "capsule":
            canvas.capsule(item[1], item[2], item[3], item[4], item[5])
        elif kind == "disk":
            canvas.disk(item[1], item[2], item[3])
        else:
            canvas.polygon(np.asarray(item[1]), item[2])

