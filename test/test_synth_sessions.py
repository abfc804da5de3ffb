"""Synthetic untrimmed sessions: files, labels in the evaluate_bag format, held-out actors,
and the `none` stretches the task gate learns from."""

from pathlib import Path

import pytest

from mtl_perception.bag.labels import read_labels
from training.datasets.none_clips import none_samples
from training.datasets.sets import load_set
from training.datasets.untrimmed import gaps
from training.datasets.video import probe_video
from training.synthetic.writer import SynthSettings, generate, plan

SMALL = SynthSettings(
    actions_per_class=4, gestures_per_class=4, width=64, height=48, frames=12, gesture_frames=20,
    clips_per_group=2, reps_per_subject=2, actions=("Walk", "Jump", "Squat"),
    gestures=("wave", "push"), train_sessions=2, test_sessions=2, session_seconds=8.0,
    backgrounds=1, background_seconds=4.0,
)


@pytest.fixture(scope="module")
def small_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sessions") / "set"
    generate(SMALL, out, workers=1)
    return out


def test_sessions_layout_labels_and_lengths(small_set: Path) -> None:
    classes = {"action": SMALL.actions, "gesture": SMALL.gestures}
    tasks_seen = set()
    for split in ("train", "test"):
        videos = sorted((small_set / "sessions" / split).glob("*.avi"))
        assert [v.name for v in videos] == ["session_00.avi", "session_01.avi"]
        for video in videos:
            info = probe_video(video)
            assert info.num_frames == round(SMALL.session_seconds * SMALL.fps)
            span = info.num_frames / info.fps
            intervals = read_labels(video.with_suffix(".csv"), classes, bag_span_s=span)
            # room sessions (even) hold gestures, yard sessions (odd) the in-place actions
            task = "gesture" if video.name.endswith("00.avi") else "action"
            assert {i.task for i in intervals} <= {task}
            assert all(i.label in ("Jump", "Squat") for i in intervals if i.task == "action")
            tasks_seen |= {i.task for i in intervals}
        background = list((small_set / "sessions" / "background" / split).glob("*"))
        assert [b.name for b in background] == ["background_00.avi"]  # no labels file
    assert tasks_seen == {"action", "gesture"}


def test_session_actors_are_the_splits_own() -> None:
    jobs = plan(SMALL)
    trimmed = {(j.task, j.group): j.test for j in jobs if j.task in ("action", "gesture")}
    for job in (j for j in jobs if j.task in ("session", "background")):
        task = "action" if job.name == "yard" else "gesture"
        assert trimmed[(task, job.group)] == job.test  # test sessions: held-out actors only


def test_set_yaml_lists_the_sessions_and_none_comes_from_their_gaps(small_set: Path) -> None:
    config = load_set(small_set / "set.yaml")
    assert [s.root.name for s in config.untrimmed] == ["sessions"]
    assert [s.root.name for s in config.background] == ["background"]
    nones = none_samples(config, "test", [], margin_s=0.3, min_frames=10)
    by_video: dict[Path, list] = {}
    for sample in nones:
        by_video.setdefault(sample.path, []).append(sample)
    background = small_set / "sessions" / "background" / "test" / "background_00.avi"
    assert [(s.start, s.end) for s in by_video[background]] == [(0, 100)]  # all of it
    for video in (small_set / "sessions" / "test").glob("*.avi"):
        intervals = read_labels(video.with_suffix(".csv"),
                                {"action": SMALL.actions, "gesture": SMALL.gestures})
        for sample in by_video.get(video, []):
            assert sample.end - sample.start >= 10
            for i in intervals:  # 0.3 s = 7.5 frames at 25 fps: 8 frames clear
                assert sample.end <= round(i.start * 25) - 7 or sample.start >= round(
                    i.end * 25) + 7


def test_gaps_by_hand() -> None:
    assert gaps(100, [(20, 30), (25, 40), (90, 95)], margin=2, min_frames=5) == [
        (0, 18), (42, 88)]
    assert gaps(50, [], margin=3, min_frames=60) == []
    assert gaps(50, [(0, 50)], margin=0, min_frames=1) == []
