"""The synthetic generator: deterministic real files, published list formats, and classes
that need motion (one frame does not tell them apart)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from training.__main__ import main
from training.datasets.video import probe_video, read_frames
from training.synthetic import motions
from training.synthetic.scene import Clip
from training.synthetic.writer import SET_YAML, SynthSettings, generate, plan, render_job

# Small but complete: two groups / two subjects so both splits are populated.
TINY = SynthSettings(
    actions_per_class=4, gestures_per_class=4, width=64, height=48, frames=12, gesture_frames=20,
    clips_per_group=2, reps_per_subject=2, actions=("Walk", "SitDown", "StandUp"),
    gestures=("wave", "swipe_left", "swipe_right"),
    train_sessions=0, test_sessions=0, backgrounds=0, real_footage=0,  # test_synth_sessions.py
)


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "set"
    generate(TINY, out, workers=1)
    return out


def test_same_seed_same_bytes_any_workers_other_seed_differs(
        tiny_set: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate(TINY, again, workers=2)  # separate processes must not change a byte
    assert _hashes(again) == _hashes(tiny_set)
    other = tmp_path / "other"
    generate(replace(TINY, seed=1), other, workers=1)
    first, second = _hashes(tiny_set), _hashes(other)
    videos = [k for k in first if k.endswith(".avi")]
    assert len(videos) == 3 * 4 + 3 * 4
    assert all(first[k] != second[k] for k in videos)


def test_ucf101_layout_and_lists(tiny_set: Path) -> None:
    lists = tiny_set / "ucfTrainTestlist"
    raw = (lists / "classInd.txt").read_bytes()
    assert raw.endswith(b"\r\n") and raw.count(b"\r\n") == raw.count(b"\n")
    classes = dict(line.split(" ") for line in raw.decode().splitlines())
    assert classes == {"1": "Walk", "2": "SitDown", "3": "StandUp"}
    index = {name: int(number) for number, name in classes.items()}
    train = (lists / "trainlist01.txt").read_bytes().decode().split("\r\n")
    test = (lists / "testlist01.txt").read_bytes().decode().split("\r\n")
    assert train[-1] == "" and test[-1] == ""  # CRLF-terminated, like the real files
    pattern = re.compile(r"^(\w+)/v_(\w+)_g(\d\d)_c(\d\d)\.avi$")
    test_groups = TINY.test_group_count()
    for line in train[:-1]:
        rel, label = line.split(" ")
        m = pattern.match(rel)
        assert m and m.group(1) == m.group(2) and int(label) == index[m.group(1)]
        assert int(m.group(3)) > test_groups
        assert (tiny_set / "UCF-101" / rel).is_file()
    for rel in test[:-1]:
        m = pattern.match(rel)  # path only: the label comes from the folder
        assert m and int(m.group(3)) <= test_groups
        assert (tiny_set / "UCF-101" / rel).is_file()
    assert len(train) - 1 + len(test) - 1 == 3 * 4 and len(test) - 1 == 3 * 2


def test_nvgesture_layout_and_lists(tiny_set: Path) -> None:
    root = tiny_set / "nvGesture"
    assert (root / "classes.txt").read_text() == "wave\nswipe_left\nswipe_right\n"
    pattern = re.compile(
        r"^path:\./Video_data/class_(\d\d)/subject(\d+)_r(\d+) depth:sk_depth:(\d+):(\d+) "
        r"color:sk_color:(\d+):(\d+) duo_left:duo_left:(\d+):(\d+) label:(\d+) $")
    subjects = {}
    for name in ("train", "test"):
        text = (root / f"nvgesture_{name}_correct_cvpr2016_v2.lst").read_text()
        assert text.endswith(" \n")
        for line in text.splitlines():
            m = pattern.match(line)
            assert m, line
            start, end = int(m.group(6)), int(m.group(7))
            assert (int(m.group(4)), int(m.group(5))) == (start, end)
            assert int(m.group(10)) == int(m.group(1))
            video = root / line.split()[0][len("path:"):] / "sk_color.avi"
            # The gesture lies inside a longer video, with idle frames before and after.
            assert 0 < start < end < probe_video(video).num_frames
            subjects.setdefault(name, set()).add(int(m.group(2)))
    assert subjects["train"].isdisjoint(subjects["test"])  # whole subjects held out


def test_set_yaml_and_project_loader(tiny_set: Path) -> None:
    assert (tiny_set / "set.yaml").read_text() == SET_YAML
    sets = pytest.importorskip("training.datasets.sets")
    config = sets.load_set(tiny_set / "set.yaml")
    for split, n_action, n_gesture in (("train", 6, 6), ("test", 6, 6)):
        tasks = sets.build_split(config, split)
        assert tasks["action"].class_names == list(TINY.actions)
        assert tasks["gesture"].class_names == list(TINY.gestures)
        assert len(tasks["action"].samples) == n_action
        assert len(tasks["gesture"].samples) == n_gesture
        for sample in tasks["gesture"].samples:
            assert sample.path.is_file() and 0 < sample.start < sample.end


def test_videos_decode_to_stated_frames_and_size(tiny_set: Path) -> None:
    for job in plan(TINY):
        info = probe_video(tiny_set / job.rel_path)
        frames = TINY.frames if job.task == "action" else TINY.gesture_frames
        assert (info.num_frames, info.width, info.height) == (frames, 64, 48)
        assert info.fps == pytest.approx(TINY.fps)
    job = plan(TINY)[0]
    decoded = read_frames(tiny_set / job.rel_path, [0, TINY.frames - 1])
    rendered = render_job(TINY, job).frames[[0, -1]]
    assert decoded.shape == (2, 48, 64, 3)
    # Lossy, but the same picture: a figure drawn on the scene, not a blank.
    assert np.abs(decoded.astype(int) - rendered).mean() < 12


def test_cli_writes_a_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    code = main(["synth", "--out", str(out), "--actions-per-class", "2",
                 "--gestures-per-class", "2", "--clips-per-group", "1",
                 "--reps-per-subject", "1", "--size", "48x32", "--frames", "8",
                 "--gesture-frames", "16", "--actions", "Jump", "--gestures", "stop",
                 "--workers", "1", "--train-sessions", "0", "--test-sessions", "0",
                 "--backgrounds", "0"])
    assert code == 0 and (out / "set.yaml").is_file()
    assert probe_video(out / "UCF-101/Jump/v_Jump_g01_c01.avi").width == 48
    with pytest.raises(SystemExit):
        main(["synth", "--out", str(out), "--actions", "Fly"])
    assert "Fly" in capsys.readouterr().err


def test_paired_classes_are_time_reversals() -> None:
    """One still frame cannot separate them: they are the same frames in another order."""
    p = motions.MotionParams(hand=1)
    n, seg = 30, (5, 25)
    left = motions.gesture_poses("swipe_left", n, seg, 25.0, p)
    right = motions.gesture_poses("swipe_right", n, seg, 25.0, p)
    for i in range(seg[0], seg[1]):
        mirror = seg[0] + seg[1] - 1 - i
        assert np.allclose(left[i].hand_l, right[mirror].hand_l, atol=1e-9)
    for u in np.linspace(0, 1, 11):
        assert np.allclose(motions.to_vector(motions.sit_down(float(u), p)),
                           motions.to_vector(motions.stand_up(1.0 - float(u), p)))


# --- a single frame is ambiguous, the motion is not ----------------------------

def _frame_features(clip: Clip) -> np.ndarray:
    """Per frame: mean colour, and the figure's centroid and box (oracle mask), all in [0, 1]."""
    frames = clip.frames.astype(np.float32) / 255
    assert clip.masks is not None
    h, w = frames.shape[1:3]
    mask = clip.masks > 0.5
    area = mask.sum(axis=(1, 2)) + 1e-6
    cy = (mask * np.arange(h)[None, :, None]).sum(axis=(1, 2)) / area / h
    cx = (mask * np.arange(w)[None, None, :]).sum(axis=(1, 2)) / area / w

    def extent(occupied: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
        idx = np.arange(size)[None]
        return (np.where(occupied, idx, size).min(1) / size,
                np.where(occupied, idx, -1).max(1) / size)

    y0, y1 = extent(mask.any(2), h)
    x0, x1 = extent(mask.any(1), w)
    aspect = (x1 - x0) / (y1 - y0 + 1e-6)
    return np.stack([*frames.mean(axis=(1, 2)).T, cx, cy, x0, x1, y0, y1, aspect], 1)


def _motion_features(clip: Clip, steps: int = 12) -> np.ndarray:
    """The same geometry as a trajectory, plus the frame-difference centroid and energy."""
    a, b = clip.segment
    geometry = _frame_features(clip)[a:b, 3:9]
    frames = clip.frames[a:b].astype(np.float32)
    h, w = frames.shape[1:3]
    moving = np.abs(np.diff(frames, axis=0)).mean(-1) > 20
    area = moving.sum(axis=(1, 2)) + 1.0
    diff = np.stack([(moving * np.arange(w)[None, None]).sum(axis=(1, 2)) / area / w,
                     (moving * np.arange(h)[None, :, None]).sum(axis=(1, 2)) / area / h,
                     area / area.mean()], 1)
    scale = (geometry[:, 5] - geometry[:, 4]).mean() + 1e-3  # figure height: size-invariant

    def resample(x: np.ndarray) -> np.ndarray:
        t = np.linspace(0, len(x) - 1, steps)
        return np.stack([np.interp(t, np.arange(len(x)), x[:, k]) for k in range(x.shape[1])], 1)

    geometry, diff = resample(geometry), resample(diff)
    geometry = (geometry - geometry.mean(0)) / scale
    diff[:, :2] = (diff[:, :2] - diff[:, :2].mean(0)) / scale
    return np.concatenate([geometry.ravel(), diff.ravel()])


def _logistic_regression(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                         n_classes: int, steps: int = 400) -> np.ndarray:
    """Softmax regression by gradient descent on standardised features; predicted labels."""
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-6
    xs = [np.c_[(x - mu) / sd, np.ones(len(x))] for x in (x_train, x_test)]
    weights = np.zeros((xs[0].shape[1], n_classes))
    targets = np.eye(n_classes)[y_train]
    for _ in range(steps):
        z = xs[0] @ weights
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        weights -= 0.5 * (xs[0].T @ (p - targets) / len(p) + 1e-3 * weights)
    return np.argmax(xs[1] @ weights, 1)


def _nearest_centroid(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                      n_classes: int) -> np.ndarray:
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-6
    a, b = (x_train - mu) / sd, (x_test - mu) / sd
    centroids = np.stack([a[y_train == c].mean(0) for c in range(n_classes)])
    return np.argmin(((b[:, None] - centroids[None]) ** 2).sum(-1), 1)


@pytest.mark.parametrize("task", ["action", "gesture"])
def test_one_frame_is_near_chance_while_motion_is_learnable(task: str) -> None:
    """Train on the train split, test on held-out groups/subjects (new actors and places).

    Thresholds: a still frame's colour, position and box must stay under 2x chance.
    Colour alone sits at chance; the box still carries some pose (a stride is wider
    than a stance), but the classes share most poses, so per-frame accuracy measured
    over seeds 0-5 is 0.8-1.8x chance, while the same geometry taken as a trajectory
    reaches 4.5-8x. Requiring 3x chance, and twice the per-frame accuracy, of the
    motion features leaves a margin on both sides.
    """
    settings = SynthSettings(
        actions_per_class=16, gestures_per_class=16, width=80, height=60, frames=24,
        gesture_frames=32, clips_per_group=2, test_groups=4, reps_per_subject=2,
        test_subjects=4)
    n_classes = len(settings.actions if task == "action" else settings.gestures)
    frame_x: dict[bool, list[np.ndarray]] = {False: [], True: []}
    frame_y: dict[bool, list[np.ndarray]] = {False: [], True: []}
    clip_x: dict[bool, list[np.ndarray]] = {False: [], True: []}
    clip_y: dict[bool, list[int]] = {False: [], True: []}
    for job in (j for j in plan(settings) if j.task == task):
        clip = render_job(settings, job, with_mask=True)
        a, b = clip.segment
        frame_x[job.test].append(_frame_features(clip)[a:b])
        frame_y[job.test].append(np.full(b - a, job.label))
        clip_x[job.test].append(_motion_features(clip))
        clip_y[job.test].append(job.label)
    chance = 1.0 / n_classes
    xf_train, xf_test = np.concatenate(frame_x[False]), np.concatenate(frame_x[True])
    yf_train, yf_test = np.concatenate(frame_y[False]), np.concatenate(frame_y[True])
    frame_acc = max(
        float(np.mean(clf(xf_train, yf_train, xf_test, n_classes) == yf_test))
        for clf in (_logistic_regression, _nearest_centroid))
    motion_pred = _logistic_regression(np.stack(clip_x[False]), np.array(clip_y[False]),
                                       np.stack(clip_x[True]), n_classes)
    motion_acc = float(np.mean(motion_pred == np.array(clip_y[True])))
    assert frame_acc < 2 * chance, f"one frame gives the class away: {frame_acc:.2f}"
    assert motion_acc > 3 * chance and motion_acc > 2 * frame_acc, (frame_acc, motion_acc)


def test_out_folder_with_other_data_is_refused(tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    """The set uses the real datasets' names: writing into a user's data folder would
    overwrite their `ucfTrainTestlist/`. A file as --out is refused too."""
    data = tmp_path / "datasets"
    (data / "ucfTrainTestlist").mkdir(parents=True)
    (data / "ucfTrainTestlist" / "classInd.txt").write_text("1 ApplyEyeMakeup\n")
    assert main(["synth", "--out", str(data), "--workers", "1"]) == 2
    assert "not empty" in caplog.text and str(data) in caplog.text
    assert (data / "ucfTrainTestlist" / "classInd.txt").read_text() == "1 ApplyEyeMakeup\n"
    assert sorted(p.name for p in data.rglob("*")) == ["classInd.txt", "ucfTrainTestlist"]
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    assert main(["synth", "--out", str(a_file), "--workers", "1"]) == 2
    assert "is a file" in caplog.text


def test_rerun_replaces_an_earlier_set_without_leftovers(tiny_set: Path, tmp_path: Path) -> None:
    """`make demo` twice: the second, smaller set leaves no video of the first behind."""
    out = tmp_path / "set"
    generate(replace(TINY, actions_per_class=6, gestures_per_class=6), out, workers=1)
    generate(TINY, out, workers=1)
    assert _hashes(out) == _hashes(tiny_set)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]  # no partial/old sibling


@pytest.mark.parametrize(("changes", "message"), [
    ({"actions_per_class": 2}, "train list would be empty"),  # 1 group, and it is test
    ({"gestures_per_class": 2, "test_subjects": 1}, "train list would be empty"),
    ({"actions_per_class": 0}, "must be positive"),
    ({"test_groups": -1}, r"test_groups: must be in 0\.\.10000"),
    ({"actions": ()}, "at least one action"),
    # whole videos are rendered in memory: an hour at 1000 fps would need 31 GiB
    ({"session_seconds": 3600.0, "fps": 1000.0, "train_sessions": 1},
     r"session_seconds: 3600 s at 1000 fps and \d+x\d+ need \d+\.\d GiB per video"),
    ({"width": 1024, "height": 768, "fps": 1000.0, "real_footage": 1},
     r"real_footage: 10 s at 1000 fps and 1024x768 need 22\.0 GiB"),
    # no gesture of 0.55 x 600 frames (13.2 s) fits a 10 s session with its idle around it
    ({"gesture_frames": 600, "session_seconds": 10.0, "train_sessions": 2},
     r"session_seconds: 10 s sessions hold no motion: the shortest is 0\.55 x gesture_frames"),
])
def test_settings_that_make_an_unusable_set_are_refused(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace(TINY, **changes)


def test_an_extra_gesture_is_accepted_by_name_and_an_unknown_one_refused() -> None:
    """`make demo-teach` asks synth for `zigzag`, outside the default set: the settings
    (the one validator the CLI and the API share) take it; a made-up name is refused."""
    from training.synthetic.settings import SynthSettings, SynthSettingsError

    assert "zigzag" not in SynthSettings().gestures
    assert SynthSettings(gestures=("wave", "zigzag")).gestures == ("wave", "zigzag")
    with pytest.raises(SynthSettingsError, match="unknown"):
        SynthSettings(gestures=("wave", "moonwalk"))
