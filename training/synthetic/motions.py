"""Per-class joint trajectories: whole-body actions and hand/arm gestures.

Every class is a function from time to `Pose`, parameterised by a few random
draws (speed, phase, timing, amplitude, hand, direction) that are sampled
independently of the class. Classes are built to share poses, so that one
still frame is ambiguous and only the motion tells them apart:

- SitDown and StandUp are the same trajectory played forwards and backwards;
  Squat passes through the same crouched poses and comes back up.
- swipe_left/swipe_right and swipe_up/swipe_down are exact time reversals of
  each other (raise and lower are symmetric).
- wave, circle and stop keep the hand in the same raised region; push ends
  where stop holds.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from training.synthetic.figure import Pose, Vec3

ACTION_CLASSES: tuple[str, ...] = ("Walk", "Jump", "Squat", "SitDown", "StandUp", "Bend", "Turn")
GESTURE_CLASSES: tuple[str, ...] = (
    "wave", "swipe_left", "swipe_right", "swipe_up", "swipe_down", "circle", "push", "stop",
)
# Gestures the default set (and so the demo model) leaves out: `make demo-teach`
# teaches one to the demo model. Rendered only when asked for by name; their
# random streams come after GESTURE_CLASSES', so the default set is unchanged.
EXTRA_GESTURE_CLASSES: tuple[str, ...] = ("zigzag",)
KNOWN_GESTURE_CLASSES: tuple[str, ...] = GESTURE_CLASSES + EXTRA_GESTURE_CLASSES

STAND = Pose()
# Seated on a stool: thighs level, shins upright, hands resting on the thighs.
SEATED = Pose(pitch=0.12, leg_l=(1.5, 1.5, 0.06), leg_r=(1.5, 1.5, 0.06),
              hand_l=(0.0, -0.2, 0.2), hand_r=(0.0, -0.2, 0.2))


@dataclass(frozen=True)
class MotionParams:
    """Random draws shared by every class, so none of them identifies a class.

    `start`/`duration`: where a one-shot motion sits in its window (fractions);
    `rate`: cycles per second of cyclic motions; `phase`: cycle offset;
    `amplitude`: size of the movement (1 = nominal); `hand`: +1 left, -1 right;
    `direction`: +1/-1 (turn and circle sense); `reps`: repetitions of
    repeatable strokes; `rest_clasped`: idle hands held together in front;
    `height`: where the gesture is made (every class spans the same heights, so
    the hand's height in one frame does not name the class); `fidget_*`: a
    small movement of the idle hand, so motion alone is not the label.
    """

    start: float = 0.1
    duration: float = 0.75
    rate: float = 1.0
    phase: float = 0.0
    amplitude: float = 1.0
    hand: int = -1
    direction: int = 1
    reps: int = 1
    rest_clasped: bool = False
    sway_phase: float = 0.0
    arm_raise: float = 1.0  # how far overhead the arms swing in a jump (0: only forward)
    height: float = 0.03  # gesture height relative to the shoulder: no class owns a height
    fidget_start: float = 0.0  # the idle hand's small unrelated movement (share of the video)
    fidget_length: float = 0.0  # 0: no fidget
    fidget_offset: Vec3 = (0.0, 0.0, 0.0)


def sample_params(rng: np.random.Generator) -> MotionParams:
    start = float(rng.uniform(0.0, 0.15))
    return MotionParams(
        start=start,
        duration=float(min(rng.uniform(0.65, 0.85), 1.0 - start)),
        rate=float(rng.uniform(0.8, 1.2)),
        phase=float(rng.uniform(0.0, 1.0)),
        amplitude=float(rng.uniform(0.85, 1.15)),
        hand=int(rng.choice([-1, 1])),
        direction=int(rng.choice([-1, 1])),
        reps=int(rng.integers(1, 3)),
        rest_clasped=bool(rng.random() < 0.35),
        sway_phase=float(rng.uniform(0.0, 2 * math.pi)),
        arm_raise=float(rng.uniform(0.0, 1.0)),
        height=float(rng.uniform(-0.07, 0.13)),
        fidget_start=float(rng.uniform(0.0, 0.8)),
        fidget_length=float(rng.uniform(0.15, 0.3)) if rng.random() < 0.3 else 0.0,
        fidget_offset=(float(rng.uniform(-0.06, 0.06)), float(rng.uniform(0.0, 0.12)),
                       float(rng.uniform(0.0, 0.1))),
    )


# --- pose algebra -------------------------------------------------------------

_FIELDS = [f.name for f in dataclasses.fields(Pose)]


def to_vector(pose: Pose) -> np.ndarray:
    out: list[float] = []
    for name in _FIELDS:
        value = getattr(pose, name)
        out.extend(value if isinstance(value, tuple) else (value,))
    return np.asarray(out, np.float64)


def from_vector(vec: np.ndarray) -> Pose:
    values: dict[str, float | tuple[float, float, float]] = {}
    i = 0
    for name in _FIELDS:
        if isinstance(getattr(STAND, name), tuple):
            values[name] = (float(vec[i]), float(vec[i + 1]), float(vec[i + 2]))
            i += 3
        else:
            values[name] = float(vec[i])
            i += 1
    return Pose(**values)  # type: ignore[arg-type]  # each field gets its own kind


def smooth(x: float) -> float:
    """Smoothstep easing on [0, 1]; symmetric, so reversed motions stay exact reversals."""
    x = min(max(x, 0.0), 1.0)
    return x * x * (3 - 2 * x)


def keyframes(u: float, keys: Sequence[tuple[float, Pose]]) -> Pose:
    """Eased interpolation between (time, pose) keys, held constant outside them."""
    if u <= keys[0][0]:
        return keys[0][1]
    for (t0, p0), (t1, p1) in itertools.pairwise(keys):
        if u <= t1:
            w = smooth((u - t0) / max(t1 - t0, 1e-9))
            return from_vector(to_vector(p0) * (1 - w) + to_vector(p1) * w)
    return keys[-1][1]


def _with_hands(pose: Pose, left: Vec3, right: Vec3) -> Pose:
    return dataclasses.replace(pose, hand_l=left, hand_r=right)


def rest_hands(p: MotionParams) -> tuple[Vec3, Vec3]:
    """Idle hand targets: hanging at the sides, or clasped in front of the belly."""
    if p.rest_clasped:
        return (-0.085, -0.24, 0.13), (0.085, -0.24, 0.13)
    return (0.015, -0.30, 0.02), (-0.015, -0.30, 0.02)


def idle(pose: Pose, seconds: float, p: MotionParams) -> Pose:
    """Small breathing and weight-shift sway added to every pose, so no frame is frozen."""
    a, b = math.sin(2 * math.pi * seconds / 3.1 + p.sway_phase), math.sin(
        2 * math.pi * seconds / 4.3 + 2 * p.sway_phase)
    return dataclasses.replace(
        pose, side=pose.side + 0.01 * a, pitch=pose.pitch + 0.015 * b,
        yaw=pose.yaw + 0.04 * b, head_pitch=pose.head_pitch + 0.05 * a)


# --- actions ------------------------------------------------------------------

def walk(cycles: float, p: MotionParams) -> Pose:
    ph = 2 * math.pi * cycles
    swing = 0.42 * p.amplitude

    def leg(phase: float) -> Vec3:
        knee = 0.1 + 1.0 * max(0.0, math.cos(phase + 0.4)) ** 1.5
        return (swing * math.sin(phase), knee, 0.02)

    arm = 0.17 * p.amplitude
    return Pose(
        fwd=0.78 * p.amplitude * cycles, pitch=0.06, plant=0.0,
        leg_l=leg(ph), leg_r=leg(ph + math.pi),
        hand_l=(0.02, -0.29, -arm * math.sin(ph)), hand_r=(-0.02, -0.29, arm * math.sin(ph)),
    )


def jump(cycles: float, p: MotionParams) -> Pose:
    phi = cycles % 1.0
    crouch = Pose(pitch=0.45, leg_l=(1.0, 1.7, 0.05), leg_r=(1.0, 1.7, 0.05),
                  hand_l=(0.0, -0.22, -0.17), hand_r=(0.0, -0.22, -0.17))
    # Some jumpers throw their arms overhead, others only forward: a raised-arms frame
    # must not by itself mean "jump".
    up = p.arm_raise
    hand_y, hand_z = -0.02 + 0.31 * up, 0.25 - 0.19 * up
    reach = Pose(pitch=0.0, hand_l=(0.05, hand_y, hand_z), hand_r=(-0.05, hand_y, hand_z))
    tuck = dataclasses.replace(reach, leg_l=(0.35, 0.7, 0.05), leg_r=(0.35, 0.7, 0.05))
    land = Pose(pitch=0.35, leg_l=(0.8, 1.3, 0.05), leg_r=(0.8, 1.3, 0.05),
                hand_l=(0.03, -0.15, 0.18), hand_r=(-0.03, -0.15, 0.18))
    pose = keyframes(phi, [(0.0, STAND), (0.25, crouch), (0.36, reach), (0.52, tuck),
                           (0.68, reach), (0.8, land), (1.0, STAND)])
    lift = 0.0
    if 0.36 < phi < 0.68:
        lift = 0.22 * p.amplitude * math.sin(math.pi * (phi - 0.36) / 0.32)
    return dataclasses.replace(pose, lift=lift)


SQUAT_BOTTOM = Pose(pitch=0.55, leg_l=(1.75, 2.3, 0.12), leg_r=(1.75, 2.3, 0.12),
                    hand_l=(0.0, -0.03, 0.3), hand_r=(0.0, -0.03, 0.3))


def squat(u: float, p: MotionParams) -> Pose:
    rep = (u * p.reps) % 1.0 if u < 1.0 else 1.0
    return keyframes(rep, [(0.0, STAND), (0.42, SQUAT_BOTTOM), (0.58, SQUAT_BOTTOM), (1.0, STAND)])


def sit_down(u: float, p: MotionParams) -> Pose:
    lean = Pose(pitch=0.3, leg_l=(0.35, 0.45, 0.05), leg_r=(0.35, 0.45, 0.05),
                hand_l=(0.02, -0.27, 0.08), hand_r=(-0.02, -0.27, 0.08))
    lowering = Pose(pitch=0.65, leg_l=(1.25, 1.4, 0.06), leg_r=(1.25, 1.4, 0.06),
                    hand_l=(0.0, -0.2, 0.2), hand_r=(0.0, -0.2, 0.2))
    return keyframes(u, [(0.0, STAND), (0.25, lean), (0.65, lowering), (1.0, SEATED)])


def stand_up(u: float, p: MotionParams) -> Pose:
    return sit_down(1.0 - u, p)


def bend(u: float, p: MotionParams) -> Pose:
    down = Pose(fwd=-0.07, pitch=min(1.35 * p.amplitude, 1.55), head_pitch=-0.5,
                leg_l=(-0.12, 0.12, 0.04), leg_r=(-0.12, 0.12, 0.04),
                hand_l=(0.0, -0.31, 0.07), hand_r=(0.0, -0.31, 0.07))
    return keyframes(u, [(0.0, STAND), (0.4, down), (0.6, down), (1.0, STAND)])


def turn(u: float, p: MotionParams) -> Pose:
    angle = p.direction * math.pi * (0.75 + 0.25 * p.amplitude / 1.15)
    pose = dataclasses.replace(STAND, yaw=angle * smooth(u))
    legs = []
    for offset in (0.0, 1.0 / 6.0):
        step = math.sin(math.pi * min(max((u * 3 - offset * 3) % 1.0, 0.0), 1.0))
        step = step if 0.0 < u < 1.0 else 0.0
        legs.append((0.3 * step, 0.65 * step, 0.03))
    return dataclasses.replace(pose, leg_l=legs[0], leg_r=legs[1])


_ONE_SHOT: dict[str, Callable[[float, MotionParams], Pose]] = {
    "Squat": squat, "SitDown": sit_down, "StandUp": stand_up, "Bend": bend, "Turn": turn,
}


def action_poses(name: str, n_frames: int, fps: float, p: MotionParams) -> list[Pose]:
    """The whole clip of an action: trimmed like UCF-101, the action fills most of it."""
    poses = []
    middle = (n_frames - 1) / 2 / fps
    for i in range(n_frames):
        seconds = i / fps
        if name == "Walk":
            pose = walk(p.phase + seconds * p.rate * 0.9, p)
            # Centre the path on the middle frame: walking towards the camera must not
            # start the clip already close (perspective would blow the figure up).
            centre = walk(p.phase + middle * p.rate * 0.9, p).fwd
            pose = dataclasses.replace(pose, fwd=pose.fwd - centre)
        elif name == "Jump":
            pose = jump(p.phase + seconds * p.rate * 1.05, p)
        else:
            u = (i / max(n_frames - 1, 1) - p.start) / p.duration
            pose = _ONE_SHOT[name](min(max(u, 0.0), 1.0), p)
        poses.append(idle(pose, seconds, p))
    return poses


# --- gestures -----------------------------------------------------------------

def _stroke(name: str, s: float, p: MotionParams) -> Vec3:
    """Active-hand target relative to its shoulder at stroke time s in [0, 1].

    x > 0 is the figure's left, which is the camera's right for a figure facing
    the camera: swipe directions are screen directions whichever hand is used,
    and `out` (+1 left hand, -1 right hand) only moves paths outward/inward.
    """
    out = p.hand
    bulge = math.sin(math.pi * s)
    a, h = p.amplitude, p.height
    if name in ("swipe_left", "swipe_right"):
        travel = 1 - 2 * s if name == "swipe_left" else 2 * s - 1
        # Centred a little inside the shoulder, so the swipe crosses in front of the body.
        return (-0.05 * out + 0.17 * a * travel, h + 0.03 * bulge, 0.18 + 0.04 * bulge)
    if name in ("swipe_up", "swipe_down"):
        rise = s if name == "swipe_up" else 1 - s
        return (-0.04 * out, h - 0.16 * a + 0.32 * a * rise, 0.17 + 0.04 * bulge)
    if name == "wave":
        swing = math.sin(math.pi * (1 + p.reps) * s)
        return (0.06 * out + 0.09 * a * swing, h + 0.1 - 0.03 * swing * swing, 0.1)
    if name == "circle":
        theta = math.pi / 2 + p.direction * 2 * math.pi * p.reps * s
        r = 0.11 * a
        return (0.02 * out + r * math.cos(theta), h + r * math.sin(theta), 0.2)
    if name == "push":
        rep = (s * p.reps) % 1.0 if s < 1.0 else 1.0
        if rep < 0.4:
            w = smooth(rep / 0.4)
        else:
            w = 1.0 if rep < 0.6 else 1.0 - smooth((rep - 0.6) / 0.4)
        # From the chest, palm forward, to the arm straight out.
        return (-0.03 * out + 0.03 * out * w, h - 0.12 + 0.12 * w, 0.05 + 0.25 * w * a)
    if name == "stop":
        tremor = 0.004 * math.sin(2 * math.pi * 3 * s)
        return (tremor, h + 0.03, 0.26)
    if name == "zigzag":  # from high on one side down across the body in wide Z strokes
        strokes = 3 + p.reps
        across = 1.0 - 2.0 * abs((s * strokes) % 2.0 - 1.0)  # triangle wave in [-1, 1]
        return (0.18 * a * across * out, h + 0.18 * a - 0.36 * a * s, 0.16 + 0.03 * bulge)
    raise KeyError(f"unknown gesture {name!r}; known: {KNOWN_GESTURE_CLASSES}")


def gesture_hand(name: str, s: float, p: MotionParams) -> Vec3:
    """Active-hand target during the labelled segment (s in [0, 1]): raise, stroke, lower.

    Raise and lower take the same share of the segment and the same eased
    path, so a reversed swipe is exactly the opposite swipe.
    """
    rise, fall = 0.18, 0.82
    rest = rest_hands(p)[0 if p.hand > 0 else 1]
    if s < rise:
        return _between(rest, _stroke(name, 0.0, p), smooth(s / rise))
    if s > fall:
        return _between(_stroke(name, 1.0, p), rest, smooth((s - fall) / (1 - fall)))
    return _stroke(name, (s - rise) / (fall - rise), p)


def _between(a: Vec3, b: Vec3, w: float) -> Vec3:
    """Interpolate with a forward bulge, so the hand passes in front of the body."""
    bulge = 0.08 * math.sin(math.pi * w)
    return (a[0] + (b[0] - a[0]) * w, a[1] + (b[1] - a[1]) * w,
            a[2] + (b[2] - a[2]) * w + bulge)


def gesture_poses(name: str, n_frames: int, segment: tuple[int, int], fps: float,
                  p: MotionParams) -> list[Pose]:
    """A longer video with the gesture in frames [start, end) and idle sway around it."""
    first, last = segment
    left_rest, right_rest = rest_hands(p)
    poses = []
    for i in range(n_frames):
        hand_l, hand_r = left_rest, right_rest
        if p.fidget_length > 0:
            bump = math.sin(math.pi * min(max(
                (i / max(n_frames - 1, 1) - p.fidget_start) / p.fidget_length, 0.0), 1.0))
            idle_hand = hand_r if p.hand > 0 else hand_l
            moved = tuple(v + bump * o for v, o in zip(idle_hand, p.fidget_offset))
            if p.hand > 0:
                hand_r = moved  # type: ignore[assignment]
            else:
                hand_l = moved  # type: ignore[assignment]
        if first <= i < last:
            s = (i - first) / max(last - 1 - first, 1)
            target = gesture_hand(name, s, p)
            if p.hand > 0:
                hand_l = target
            else:
                hand_r = target
        poses.append(idle(_with_hands(STAND, hand_l, hand_r), i / fps, p))
    return poses
