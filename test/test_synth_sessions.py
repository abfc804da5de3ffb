"""Synthetic untrimmed sessions: files, labels in the evaluate_bag format, held-out actors,
and the `none` stretches the task gate learns from."""

from pathlib import Path

import pytest

from mtl_perception.bag.labels import read_labels
from mtl_perception.bag.shown import read_shown
from training.datasets.none_clips import none_samples
from training.datasets.sets import load_set
from training.datasets.untrimmed import gaps
from training.datasets.video import probe_video
from training.synthetic.writer import SynthSettings, generate, plan

SMALL = SynthSettings(
    actions_per_class=4, gestures_per_class=4, width=64, height=48, frames=12, gesture_frames=20,
    clips_per_group=2, reps_per_subject=2, actions=("Walk", "Jump", "Squat"),
    gestures=("wave", "push"), train_sessions=4, test_sessions=2, session_seconds=8.0,
    backgrounds=1, background_seconds=4.0, real_footage=1,
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
        count = SMALL.test_sessions if split == "test" else SMALL.train_sessions
        assert [v.name for v in videos] == [f"session_{i:02d}.avi" for i in range(count)]
        for video in videos:
            info = probe_video(video)
            assert info.num_frames == round(SMALL.session_seconds * SMALL.fps)
            span = info.num_frames / info.fps
            intervals = read_labels(video.with_suffix(".csv"), classes, bag_span_s=span,
                                    allow_empty=True)
            # room sessions (even) hold gestures, yard sessions (odd) the in-place actions
            task = "gesture" if int(video.stem[-2:]) % 2 == 0 else "action"
            assert {i.task for i in intervals} <= {task}
            assert all(i.label in ("Jump", "Squat") for i in intervals if i.task == "action")
            tasks_seen |= {i.task for i in intervals}
        background = sorted(b.name for b in
                            (small_set / "sessions" / "background" / split).glob("*.avi"))
        real = ["real_bikes_0.avi", "real_carphone_0.avi"]  # bigbuckbunny: train only
        assert background == ["background_00.avi", *(["real_bigbuckbunny_0.avi"]
                                                     if split == "train" else []), *real]
        assert not list((small_set / "sessions" / "background" / split).glob("*[0-9].csv"))
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
                                {"action": SMALL.actions, "gesture": SMALL.gestures},
                                allow_empty=True)
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


def _tiny_checkpoint(path: Path, clip_length: int = 4) -> Path:
    import torch
    from helpers_models import tiny_config

    from mtl_perception.checkpoint import CheckpointInfo, save_checkpoint
    from mtl_perception.models import build_model
    from mtl_perception.preprocess import PreprocessConfig

    torch.manual_seed(0)
    config = tiny_config("hps", num_classes=(3, 2), frame_differences=True)
    model = build_model(config).eval()
    info = CheckpointInfo(config, (SMALL.actions, SMALL.gestures),
                          PreprocessConfig(clip_length=clip_length, resize=(24, 32),
                                           crop=(24, 24)))
    save_checkpoint(path, model, info)
    return path


def test_fit_gate_adds_a_gate_and_keeps_every_task_score(small_set: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    import torch

    from mtl_perception.checkpoint import load_checkpoint
    from training.__main__ import main

    source = _tiny_checkpoint(tmp_path / "plain.safetensors")
    out = tmp_path / "gated.safetensors"
    code = main(["fit-gate", "--checkpoint", str(source), "--set", str(small_set / "set.yaml"),
                 "--out", str(out), "--clips-per-video", "1", "--steps", "50",
                 "--max-videos", "6", "--context", "0"])
    assert code == 0
    assert f"checkpoint with gate: {out}" in capsys.readouterr().out
    plain, gated = load_checkpoint(source), load_checkpoint(out)
    assert plain.model.gate is None and gated.model.gate is not None
    assert gated.info.model.gate and gated.info.provenance["gate_fit"]["train"]["clips"] > 0
    # the event settings chosen on the train sessions, each half by the gate fitted without it
    stored = gated.info.provenance["stream_defaults"]
    assert stored["event_source"] == "gate" and 0.3 <= stored["event_threshold"] <= 0.95
    # ... and on one stream per half joined from that half's labelled motions
    assert stored["chosen_on"]["videos"] == ["session_02.avi", "session_03.avi",
                                             "session_00.avi", "session_01.avi",
                                             "composed:session_02.avi..session_03.avi",
                                             "composed:session_00.avi..session_01.avi"]
    labels = [p for p in (small_set / "sessions" / "train").glob("session_*.csv")
              if not p.name.endswith(".shown.csv")]
    labelled = sum(1 for p in labels for line in p.read_text().splitlines()[1:]
                   if line.split(",")[2] == "gesture")
    assert stored["chosen_on"]["gestures"] == 2 * labelled  # each motion in both kinds
    clips = torch.randn(3, 3, 4, 24, 24, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before, after = plain.model.score_all(clips), gated.model.score_all(clips)
    assert len(after) == 3 and after[-1].shape == (3, 3)
    assert all(torch.equal(a, b) for a, b in zip(before, after[:2]))  # weights untouched
    # A set without any none stretch is refused in one line.
    no_none = tmp_path / "no_none.yaml"
    text = (small_set / "set.yaml").read_text().split("untrimmed:")[0]
    no_none.write_text(text.replace("root: ", f"root: {small_set}/").replace(
        "annotations: ", f"annotations: {small_set}/"))
    assert main(["fit-gate", "--checkpoint", str(source), "--set", str(no_none),
                 "--no-around-segments"]) == 2
    assert "no none clips" in capsys.readouterr().err


def test_fit_gate_no_composed_chooses_on_the_sessions_alone(small_set: Path, tmp_path: Path
                                                            ) -> None:
    from mtl_perception.checkpoint import load_checkpoint
    from training.__main__ import main

    source = _tiny_checkpoint(tmp_path / "plain.safetensors")
    out = tmp_path / "gated.safetensors"
    assert main(["fit-gate", "--checkpoint", str(source), "--set", str(small_set / "set.yaml"),
                 "--out", str(out), "--clips-per-video", "1", "--steps", "20",
                 "--max-videos", "6", "--no-composed"]) == 0
    chosen_on = load_checkpoint(out).info.provenance["stream_defaults"]["chosen_on"]
    assert chosen_on["videos"] == ["session_02.avi", "session_03.avi",
                                   "session_00.avi", "session_01.avi"]


def test_fit_gate_with_memory_learns_from_stream_windows(small_set: Path, tmp_path: Path
                                                        ) -> None:
    """fit-gate --context 4 on a set of videos: a linear gate reading the 4 clips before
    each one, fitted on every clip as the stream cuts it, with its event settings chosen."""
    import torch

    from mtl_perception.checkpoint import load_checkpoint
    from training.__main__ import main

    source = _tiny_checkpoint(tmp_path / "plain.safetensors")
    out = tmp_path / "gated.safetensors"
    assert main(["fit-gate", "--checkpoint", str(source), "--set", str(small_set / "set.yaml"),
                 "--out", str(out), "--steps", "30", "--max-videos", "6", "--context", "4"]) == 0
    gated = load_checkpoint(out)
    assert (gated.info.model.gate_context, gated.info.model.gate_hidden) == (4, 0)
    fit = gated.info.provenance["gate_fit"]
    assert fit["context"] == 4 and fit["inference_stride"] == 2
    # every labelled clip of every train video (4 sessions, 6 trimmed per task, 2 backgrounds)
    assert fit["stream_windows"] == fit["train"]["clips"] > 100
    assert "clips_per_video" not in fit
    assert gated.info.provenance["stream_defaults"]["event_source"] == "gate"
    clips = torch.randn(3, 3, 4, 24, 24, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out_all = gated.model.score_all(clips)
    assert out_all[-1].shape == (3, 5, 3)  # each clip's shares of 5 clips' logits


def test_fit_gate_with_memory_refuses_in_one_line_what_gives_no_windows(
        small_set: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from training.__main__ import main

    # clips of 250 frames: longer than every video of the set (sessions are 200)
    source = _tiny_checkpoint(tmp_path / "long.safetensors", clip_length=250)
    assert main(["fit-gate", "--checkpoint", str(source), "--set", str(small_set / "set.yaml"),
                 "--out", str(tmp_path / "g.safetensors"), "--steps", "2", "--max-videos", "2",
                 "--context", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1
    with pytest.raises(SystemExit) as stop:  # an argparse bound: usage and one error line
        main(["fit-gate", "--checkpoint", str(source), "--set", str(small_set / "set.yaml"),
              "--context", "2", "--inference-stride", "0"])
    assert stop.value.code == 2
    assert "--inference-stride: must be in 1..1000, got 0" in capsys.readouterr().err


def test_to_bag_replays_a_session_split_with_its_labels(small_set: Path, tmp_path: Path) -> None:
    import csv

    from training.tools.to_bag import main

    out = tmp_path / "bag"
    assert main(["--set", str(small_set / "set.yaml"), "--split", "test", "--untrimmed",
                 "--background", "--gap-s", "1", "--out", str(out)]) == 0
    with open(out / "labels.csv") as handle:
        rows = list(csv.DictReader(handle))
    expected = []
    for n, video in enumerate(sorted((small_set / "sessions" / "test").glob("*.avi"))):
        offset = n * (SMALL.session_seconds + 1.0)  # videos back to back, 1 s apart
        with open(video.with_suffix(".csv")) as handle:
            expected += [(float(r["start"]) + offset, float(r["end"]) + offset, r["task"],
                          r["label"]) for r in csv.DictReader(handle)]
    got = [(float(r["start"]), float(r["end"]), r["task"], r["label"]) for r in rows]
    assert [g[2:] for g in got] == [e[2:] for e in expected]
    assert all(abs(g[0] - e[0]) < 1e-6 and abs(g[1] - e[1]) < 1e-6
               for g, e in zip(got, expected))
    summary = (out / "dataset_to_bag.json").read_text()
    # two sessions, the background video and one take of each held-out real video
    assert '"videos": 5' in summary
    shown = read_shown(out / "shown.csv")
    assert {s.kind for s in shown} >= {"idle", "real"}
    assert shown[-1].kind == "real" and shown[-2].kind == "real"
    # --with-trimmed: one whole trimmed test video per task after them, lead around its segment
    more = tmp_path / "bag_trimmed"
    assert main(["--set", str(small_set / "set.yaml"), "--split", "test", "--untrimmed",
                 "--background", "--with-trimmed", "1", "--out", str(more)]) == 0
    with open(more / "labels.csv") as handle:
        extra = list(csv.DictReader(handle))[len(rows):]
    assert sorted(r["task"] for r in extra) == ["action", "gesture"]
    tail = read_shown(more / "shown.csv")[len(shown):]
    assert {s.kind for s in tail} <= {"lead", "action", "gesture"} and "lead" in {
        s.kind for s in tail}


@pytest.mark.parametrize("method", ["hps", "lws"])
def test_trainer_trains_a_gate_jointly(small_set: Path, tmp_path: Path, method: str) -> None:
    """The whole path: none clips from the sessions, the sampler's share, the gated step,
    validation with gate figures, a checkpoint that carries the gate."""
    import torch
    from test_train_helpers import tiny_config

    from mtl_perception.checkpoint import load_checkpoint
    from training.train.trainer import train

    torch.set_num_threads(1)
    config = tiny_config(small_set / "set.yaml", f"method={method}", "gate.enabled=true",
                         "gate.hidden=8", "iterations=3", "val_every=3", "save_every=3",
                         "lws.nes_samples=2", "lws.sgd_samples=1", "batch_size=6")
    result = train(config, tmp_path / "run", progress=False, tensorboard=False)
    gate = result.history[-1]["gate"]
    assert 0.0 <= gate["accuracy"] <= 1.0 and 0.0 <= gate["task_agnostic"] <= 1.0
    loaded = load_checkpoint(result.best)
    assert loaded.info.model.gate and loaded.model.gate is not None
    with torch.no_grad():
        scores = loaded.model.score_all(torch.zeros(2, 3, 8, 24, 24))
    assert scores[-1].shape == (2, 3)


def test_long_none_stretches_are_cut_into_pieces(small_set: Path) -> None:
    from training.datasets.untrimmed import UntrimmedVideo, none_from_untrimmed

    background = small_set / "sessions" / "background" / "test" / "background_00.avi"
    whole = none_from_untrimmed([UntrimmedVideo(background)], 0.3, 10)
    assert [(s.start, s.end) for s in whole] == [(0, 100)]
    pieces = none_from_untrimmed([UntrimmedVideo(background)], 0.3, 10, piece_frames=30)
    assert [(s.start, s.end) for s in pieces] == [(0, 33), (33, 66), (66, 100)]
    # a piece is never shorter than one clip's span
    assert len(none_from_untrimmed([UntrimmedVideo(background)], 0.3, 40, 10)) == 2


def test_session_motions_become_gate_samples_with_their_edges(small_set: Path) -> None:
    from training.datasets.untrimmed import (
        LabelledInterval,
        UntrimmedVideo,
        tasks_from_untrimmed,
    )

    video = sorted((small_set / "sessions" / "train").glob("*.avi"))[0]
    frames, fps = probe_video(video).num_frames, probe_video(video).fps  # 200 frames at 25 fps
    intervals = (LabelledInterval(2.0, 3.0, "gesture", "wave"),     # frames 50..75
                 LabelledInterval(4.0, 4.2, "action", "Jump"),      # 100..105: < one span
                 LabelledInterval(7.6, 8.0, "gesture", "push"),     # 190..200: at the end
                 LabelledInterval(5.0, 6.0, "pointing", "here"))    # not a task of the model
    items = tasks_from_untrimmed([UntrimmedVideo(video, intervals)], ("action", "gesture"),
                                 min_frames=20, reach=0.25)
    assert (frames, fps) == (200, 25.0)
    # widened by floor(0.25 * 20) = 5 frames each side; a short one centred to one span;
    # one at the video's end shifted back inside it
    assert [(s.start, s.end, task) for s, task in items] == [
        (45, 80, 1), (92, 112, 0), (180, 200, 1)]
    assert all(s.path == video for s, _ in items)
    with pytest.raises(ValueError, match="reach"):
        tasks_from_untrimmed([UntrimmedVideo(video, intervals)], ("gesture",), 20, reach=0.5)


def _set_copy(small_set: Path, tmp_path: Path) -> Path:
    """A copy of the small set (its sessions to alter) whose YAML reads the copy."""
    import shutil

    copy = tmp_path / "set"
    shutil.copytree(small_set, copy)
    return copy


def test_fit_gate_refuses_session_labels_the_checkpoint_cannot_use_in_one_line(
        small_set: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from training.__main__ import main

    source = _tiny_checkpoint(tmp_path / "plain.safetensors")
    copy = _set_copy(small_set, tmp_path)
    labels = copy / "sessions" / "train" / "session_02.csv"
    text = labels.read_text()
    out = tmp_path / "gated.safetensors"
    for defect, words in [(text.replace(",gesture,wave", ",gesture,STOPP", 1),
                           "session_02.csv:2: unknown gesture class 'STOPP'; the checkpoint's "
                           "gesture classes: wave, push"),
                          (text + "30,31,gesture,wave\n",
                           "lies outside the video ([0, 8.000] s from the first image)")]:
        labels.write_text(defect)
        assert main(["fit-gate", "--checkpoint", str(source), "--set", str(copy / "set.yaml"),
                     "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err and not out.exists()
    labels.write_text(text)
    # the set's session files are inputs, and the set is synth's: never written over,
    # --overwrite or not (refused as lying inside the set, before the set is even read)
    assert main(["fit-gate", "--checkpoint", str(source), "--set", str(copy / "set.yaml"),
                 "--out", str(labels), "--overwrite"]) == 2
    assert f"lies inside {copy}, an earlier training.synthetic output" in \
        capsys.readouterr().err
    assert labels.read_text() == text
    with pytest.raises(SystemExit):  # torch's seed range, checked before any work
        main(["fit-gate", "--checkpoint", str(source), "--set", str(copy / "set.yaml"),
              "--seed", str(2**64)])
    assert "--seed: must be in" in capsys.readouterr().err


def test_fit_gate_chooses_no_settings_without_gestures_and_refuses_mixed_rates(
        small_set: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    import numpy as np

    from mtl_perception.checkpoint import load_checkpoint
    from training.__main__ import main
    from training.datasets.video import write_video

    source = _tiny_checkpoint(tmp_path / "plain.safetensors")
    copy = _set_copy(small_set, tmp_path)
    sessions = copy / "sessions" / "train"
    for labels in sessions.glob("session_0[02].csv"):  # the gesture (room) sessions
        labels.write_text("start,end,task,label\n")
    out = tmp_path / "gated.safetensors"
    assert main(["fit-gate", "--checkpoint", str(source), "--set", str(copy / "set.yaml"),
                 "--out", str(out), "--clips-per-video", "1", "--steps", "5",
                 "--max-videos", "4"]) == 0
    assert "label no gesture: event settings not chosen" in caplog.text
    assert "stream_defaults" not in load_checkpoint(out).info.provenance
    # one session at 12.5 fps among 25 fps ones: the settings would be chosen at one
    # stream rate, the wrong one for the others; refused before any work
    write_video(sessions / "session_01.avi", np.zeros((100, 48, 64, 3), np.uint8), fps=12.5)
    assert main(["fit-gate", "--checkpoint", str(source), "--set", str(copy / "set.yaml"),
                 "--out", str(tmp_path / "other.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "sessions have different frame rates (session_00.avi 25 fps, session_01.avi " \
           "12.5 fps)" in err


def test_to_bag_refuses_a_session_it_cannot_replay_before_writing(
        small_set: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from helpers_datasets import corrupt_video

    from training.tools.to_bag import main

    copy = _set_copy(small_set, tmp_path)
    sessions = copy / "sessions" / "test"
    labels = sessions / "session_00.csv"
    text = labels.read_text()
    out = tmp_path / "bag"
    for row, words in [("0.1,0.9,gesture,STOPP", "unknown gesture class 'STOPP'; the set's"),
                       ("1e307,1e308,gesture,wave", "lies outside the video")]:
        labels.write_text(text + row + "\n")
        caplog.clear()
        assert main(["--set", str(copy / "set.yaml"), "--split", "test", "--untrimmed",
                     "--out", str(out)]) == 2
        line = len(text.splitlines()) + 1
        assert f"session_00.csv:{line}: " in caplog.text and words in caplog.text
        assert "ROS stamps" not in caplog.text and not out.exists()
    labels.write_text(text)
    corrupt_video(sessions / "session_01.avi")
    caplog.clear()
    assert main(["--set", str(copy / "set.yaml"), "--split", "test", "--untrimmed",
                 "--out", str(out)]) == 2
    assert "cannot read untrimmed video" in caplog.text and "session_01.avi" in caplog.text
    assert not out.exists()


def test_training_with_the_gate_and_evaluate_refuse_a_session_class_they_do_not_know(
        small_set: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from test_train_helpers import tiny_config

    from mtl_perception.settings import SettingsError
    from training.__main__ import main
    from training.datasets.listfile import DatasetError
    from training.train.data import build_data

    copy = _set_copy(small_set, tmp_path)
    labels = copy / "sessions" / "train" / "session_00.csv"
    labels.write_text(labels.read_text() + "7.5,7.9,gesture,zigzag\n")
    line = len(labels.read_text().splitlines())
    config = tiny_config(copy / "set.yaml", "gate.enabled=true")
    with pytest.raises((DatasetError, SettingsError),
                       match=rf"session_00\.csv:{line}: unknown gesture class 'zigzag'; "
                             r"the run's gesture classes: wave, push"):
        build_data(config)
    source = _tiny_checkpoint(tmp_path / "plain.safetensors")
    gated = tmp_path / "gated.safetensors"
    assert main(["fit-gate", "--checkpoint", str(source), "--set", str(small_set / "set.yaml"),
                 "--out", str(gated), "--clips-per-video", "1", "--steps", "5",
                 "--max-videos", "4", "--no-tune"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(gated), "--config", str(copy / "set.yaml"),
                 "--split", "train", "--no-video"]) == 2
    assert f"session_00.csv:{line}: unknown gesture class 'zigzag'; the checkpoint's" in \
        capsys.readouterr().err
