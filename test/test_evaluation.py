"""`training.evaluation.scoring` on a hand-built case: clip, video and cumulative accuracy.

Real videos (PyAV, 12 uniform-grey frames of 32x32) and a stub model whose
class probabilities are a fixed table indexed by the brightness of a clip's
first frame. With clip length 4 and 3 evaluation clips, a 12-frame video has
start offsets 0..8; the evenly spaced clips start at 1, 4 and 7 and the centre
clip at 4 (clips.py), so frames 1, 4 and 7 decide everything. Every expected
figure below is worked out by hand from the tables in the comments.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mtl_perception.models import ModelConfig, MultiTaskModel
from mtl_perception.preprocess import PreprocessConfig
from training.datasets.sample import UNLABELLED, LabelledSplit, VideoSample
from training.datasets.video import write_video
from training.evaluation.scoring import EvalConfig, EvaluationError, Evaluator, evaluate, subset

PRE = PreprocessConfig(clip_length=4, resize=(32, 32), crop=(32, 32))
LEVELS = (32, 96, 160)  # grey value of brightness code 0, 1, 2

# Class probabilities per brightness code (the stub's softmax).
ACTION_P = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.5, 0.4], [0.1, 0.3, 0.6]])
GESTURE_P = torch.tensor([[0.9, 0.1], [0.4, 0.6], [0.45, 0.55]])


class TableModel(MultiTaskModel):
    """log(table[code of the clip's first frame]) for each sample's own task."""

    def __init__(self) -> None:
        super().__init__(ModelConfig(method="hps", task_names=("action", "gesture"),
                                     num_classes=(3, 2)))
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.seen_training: list[bool] = []

    def forward(self, clips: torch.Tensor, task_ids: torch.Tensor) -> list[torch.Tensor]:
        self.seen_training.append(self.training)
        assert not torch.is_grad_enabled()
        red = clips[:, 0, 0].mean(dim=(1, 2))  # first frame, red channel, normalised
        grey = (red * PRE.std[0] + PRE.mean[0]) * 255
        codes = ((grey - LEVELS[0]) / 64).round().clamp(0, 2).long()
        return [torch.log(table[codes[task_ids == t]])
                for t, table in enumerate((ACTION_P, GESTURE_P))]


def video(path: Path, codes: tuple[int, int, int]) -> Path:
    """12 frames; frames 0-3, 4-6, 7-11 take the three codes (clip starts 1, 4, 7)."""
    per_frame = [codes[0]] * 4 + [codes[1]] * 3 + [codes[2]] * 5
    frames = np.stack([np.full((32, 32, 3), LEVELS[c], np.uint8) for c in per_frame])
    write_video(path, frames, fps=10.0, bit_rate=4_000_000)
    return path


@pytest.fixture(scope="module")
def splits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, LabelledSplit]:
    d = tmp_path_factory.mktemp("eval")
    bad = d / "a_bad.avi"
    bad.write_bytes(b"not a video" * 100)
    action = [
        # label, codes of clips 1/2/3 -> centre clip (code of clip 2), mean softmax
        VideoSample(video(d / "a0.avi", (1, 0, 1)), 0),  # centre 0 ok; mean .3/.4/.3 -> 1 wrong
        VideoSample(video(d / "a1.avi", (0, 2, 0)), 0),  # centre 2 wrong; mean .5/.23/.27 -> 0 ok
        VideoSample(video(d / "a2.avi", (2, 2, 2)), 2),  # centre 2 ok; mean -> 2 ok
        VideoSample(bad, 1),  # unreadable: skipped, counted
    ]
    gesture = [
        # mean softmax differs from a majority vote here: votes 0,1,1 -> 1, mean .583 -> 0
        VideoSample(video(d / "g0.avi", (0, 1, 2)), 0),  # centre 1 wrong; mean -> 0 ok
        VideoSample(video(d / "g1.avi", (1, 1, 1)), 1),  # ok, ok
        VideoSample(video(d / "g2.avi", (0, 0, 2)), 1),  # centre 0 wrong; mean .75 -> 0 wrong
        VideoSample(video(d / "g3.avi", (0, 0, 0)), 0),  # ok, ok
        VideoSample(d / "g1.avi", UNLABELLED),  # no label: left out, counted
    ]
    return {
        "action": LabelledSplit(action, ["run", "jump", "wave"], "action list"),
        "gesture": LabelledSplit(gesture, ["left", "right"], "gesture list"),
    }


def test_hand_computed_accuracies(splits: dict[str, LabelledSplit]) -> None:
    model = TableModel().train()
    config = EvalConfig(batch_size=5, num_eval_clips=3)  # batch 5 mixes tasks; 1 video/pass
    result = evaluate(model, splits, PRE, config)
    assert model.training and model.seen_training and not any(model.seen_training)

    action, gesture = result.task("action"), result.task("gesture")
    assert (action.videos, action.skipped, action.unlabelled) == (4, 1, 0)
    assert (gesture.videos, gesture.skipped, gesture.unlabelled) == (4, 0, 1)
    assert (action.clip.correct, action.clip.total) == (2, 3)
    assert action.video is not None and gesture.video is not None
    assert (action.video.correct, action.video.total) == (2, 3)
    assert (gesture.clip.correct, gesture.clip.total) == (2, 4)
    assert (gesture.video.correct, gesture.video.total) == (3, 4)
    # Cumulative = all correct / all predictions, not the mean of the tasks (7/12, 17/24).
    assert result.cumulative_clip_accuracy == pytest.approx(4 / 7)
    assert result.cumulative_video_accuracy == pytest.approx(5 / 7)
    # confusion[true][predicted]: a0 0->0, a1 0->2, a2 2->2 (clips); a0 0->1, a1 0->0 (videos)
    assert action.clip.confusion == [[1, 0, 1], [0, 0, 0], [0, 0, 1]]
    assert action.video.confusion == [[1, 1, 0], [0, 0, 0], [0, 0, 1]]
    assert action.clip.per_class == {"run": 0.5, "jump": None, "wave": 1.0}
    assert gesture.clip.confusion == [[1, 1], [1, 1]]
    assert gesture.video.per_class == {"left": 1.0, "right": 0.5}
    assert result.skipped == 1 and result.skipped_paths == [str(splits["action"].samples[3].path)]

    data = json.loads(result.to_json())
    assert data["cumulative_clip_accuracy"] == pytest.approx(4 / 7)
    assert data["tasks"]["gesture"]["video_accuracy"] == pytest.approx(0.75)
    assert data["tasks"]["action"]["clip"]["per_class"]["jump"] is None
    assert result.summary()["gesture/clip_accuracy"] == pytest.approx(0.5)


def test_centre_only_subset_and_single_task(splits: dict[str, LabelledSplit]) -> None:
    class GestureOnly(TableModel):
        def __init__(self) -> None:
            super().__init__()
            self.config = ModelConfig(method="stl", task_names=("gesture",), num_classes=(2,))

        def forward(self, clips: torch.Tensor, task_ids: torch.Tensor) -> list[torch.Tensor]:
            return [super().forward(clips, task_ids + 1)[1]]  # the gesture table as task 0

    # max_videos=2 of g0..g3 picks the ends of the list, g0 and g3: clips wrong, right.
    config = EvalConfig(batch_size=2, max_videos=2, video_accuracy=False)
    result = Evaluator(splits, ("gesture",), PRE, config)(GestureOnly())
    assert [t.task for t in result.tasks] == ["gesture"]
    assert result.tasks[0].video is None and result.cumulative_video_accuracy is None
    assert (result.tasks[0].clip.correct, result.tasks[0].clip.total) == (1, 2)
    assert json.loads(result.to_json())["cumulative_video_accuracy"] is None


def test_every_video_bad_gives_nan_not_a_crash(tmp_path: Path) -> None:
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"junk" * 64)
    split = {"action": LabelledSplit([VideoSample(bad, 0)], ["a", "b", "c"]),
             "gesture": LabelledSplit([VideoSample(bad, 1)], ["l", "r"])}
    result = evaluate(TableModel(), split, PRE, EvalConfig(video_accuracy=False))
    assert result.skipped == 2 and math.isnan(result.cumulative_clip_accuracy)
    assert json.loads(result.to_json())["cumulative_clip_accuracy"] is None


def test_refusals(splits: dict[str, LabelledSplit]) -> None:
    with pytest.raises(EvaluationError, match="no split for task"):
        Evaluator({"action": splits["action"]}, ("action", "gesture"), PRE)
    unlabelled = LabelledSplit([VideoSample(Path("x.avi"), UNLABELLED)], ["l", "r"], "test list")
    with pytest.raises(EvaluationError, match="test list has no labelled sample"):
        Evaluator({**splits, "gesture": unlabelled}, ("action", "gesture"), PRE)
    with pytest.raises(ValueError, match="max_videos"):
        EvalConfig(max_videos=0)


def test_subset_spreads_over_the_list() -> None:
    samples = [VideoSample(Path(f"{i}.avi"), i) for i in range(10)]
    assert [s.label for s in subset(samples, 4)] == [0, 3, 6, 9]
    assert subset(samples, None) == samples and subset(samples, 20) == samples
