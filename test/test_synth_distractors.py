"""The sessions' scene distractors (training/synthetic/distractors.py), what a session shows
(`Session.shown`, written as NAME.shown.csv) and the real-footage takes."""

from __future__ import annotations

import numpy as np
import pytest

from mtl_perception.bag.shown import KINDS
from training.synthetic.distractors import SCENE_DISTRACTORS, paint
from training.synthetic.sessions import Segment, Session, plan_segments

FLAT = np.full((12, 48, 64, 3), 128, np.uint8)


@pytest.mark.parametrize("name", SCENE_DISTRACTORS)
def test_each_distractor_changes_only_its_frames(name: str) -> None:
    frames = FLAT.copy()
    noise = np.random.default_rng(5).integers(0, 255, FLAT.shape, dtype=np.uint8)
    frames[:] = noise  # texture, so a camera move changes pixels too
    before = frames.copy()
    paint(frames, name, 3, 10, np.random.default_rng(0), 25.0)
    assert frames.shape == FLAT.shape and frames.dtype == np.uint8
    assert np.array_equal(frames[:3], before[:3]) and np.array_equal(frames[10:], before[10:])
    changed = [not np.array_equal(frames[t], before[t]) for t in range(3, 10)]
    assert sum(changed) >= 4, f"{name}: changed {changed}"


def test_an_unknown_distractor_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown scene distractor 'dance'"):
        paint(FLAT.copy(), "dance", 0, 5, np.random.default_rng(0), 25.0)


def test_shown_covers_every_frame_with_its_kind() -> None:
    fps = 10.0
    segments = [Segment(10, 20, "gesture", "wave"), Segment(40, 50, "", "walker"),
                Segment(60, 70, "", "drink")]
    session = Session(np.zeros((80, 2, 2, 3), np.uint8), segments)
    # GAP_S 0.5 s = 5 frames of gap around the gesture
    assert session.shown(fps) == [(0.0, 0.5, "idle"), (0.5, 1.0, "gap"), (1.0, 2.0, "gesture"),
                                  (2.0, 2.5, "gap"), (2.5, 4.0, "idle"), (4.0, 5.0, "walker"),
                                  (5.0, 6.0, "idle"), (6.0, 7.0, "distractor"),
                                  (7.0, 8.0, "idle")]
    assert {k for *_, k in session.shown(fps)} <= set(KINDS)
    assert Session(np.zeros((30, 2, 2, 3), np.uint8), [], whole="real").shown(fps) == [
        (0.0, 3.0, "real")]


def test_plans_hold_scene_distractors_only_when_asked() -> None:
    lengths = {n: (10, 20) for n in ("wave", "drink", *SCENE_DISTRACTORS)}

    def names(scene: tuple[str, ...]) -> set[str]:
        plan = plan_segments(np.random.default_rng(3), 20000, 25.0, ("wave",), "gesture",
                             ("drink",), lengths, scene)
        return {s.name for s in plan}

    assert names(()) == {"wave", "drink"}
    assert names(SCENE_DISTRACTORS) == {"wave", "drink", *SCENE_DISTRACTORS}
