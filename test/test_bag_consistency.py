"""evaluate_bag's segment accuracy against training's video accuracy on the same videos.

When both score the same clips they must agree exactly: here every video has
`clip_length + 2` frames, training's video accuracy takes 3 evenly spaced
clips (offsets 0, 1, 2: every possible clip), and the bag is evaluated at the
videos' frame rate with `inference_stride=1` (the same three clips per video;
the 1 s pause between videos restarts the buffer, so no clip mixes two
videos). Same decoder, preprocessing and model, so the same confusion
matrices: the tested tolerance is zero. Elsewhere the two differ only by
clip placement (every `inference_stride` sampled frames vs `num_eval_clips`
evenly spaced clips), see docs/bag-evaluation.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_bag import ACTIONS, GESTURES, frames, tiny_checkpoint

from mtl_perception.bag.evaluate import main as evaluate_bag
from mtl_perception.checkpoint import load_checkpoint
from training.datasets import sets
from training.datasets.video import write_video
from training.tools.to_bag import main as dataset_to_bag

evaluation = pytest.importorskip("training.evaluation.scoring")  # helper evalexp's module

CLIP, FPS = 4, 10.0
SET_YAML = """name: consistency
tasks:
  action:
    - {format: mmaction, root: videos, test_list: action.txt, train_list: action.txt,
       class_names: action_classes.txt}
  gesture:
    - {format: mmaction, root: videos, test_list: gesture.txt, train_list: gesture.txt,
       class_names: gesture_classes.txt}
"""


def _video(label: int, copy: int) -> np.ndarray:
    """Noise tinted by class and shaded by copy, so that a random model's answers vary."""
    video = frames(CLIP + 2, 10 * label + copy, size=(24, 32)).astype(np.int32) // 4
    video[..., label % 3] += 180
    video[:, : 8 * (copy + 1)] //= 2
    return np.clip(video, 0, 255).astype(np.uint8)


def _dataset(root: Path) -> Path:
    videos = root / "videos"
    lines: dict[str, list[str]] = {"action": [], "gesture": []}
    for task, names in (("action", ACTIONS), ("gesture", GESTURES)):
        for label in range(len(names)):
            for copy in range(2):
                name = f"{task}_{label}_{copy}.avi"
                write_video(videos / name, _video(label, copy), fps=FPS)
                lines[task].append(f"{name} {label}")
        (videos / f"{task}.txt").write_text("\n".join(lines[task]) + "\n")
        (videos / f"{task}_classes.txt").write_text("\n".join(names) + "\n")
    (root / "set.yaml").write_text(SET_YAML)
    return root / "set.yaml"


def test_segment_accuracy_equals_video_accuracy_on_the_same_clips(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    set_file = _dataset(tmp_path)
    checkpoint = tiny_checkpoint(tmp_path / "model.safetensors", clip_length=CLIP, seed=0)
    bag = tmp_path / "bag"
    assert dataset_to_bag(["--set", str(set_file), "--out", str(bag), "--gap-s", "1"]) == 0
    out = tmp_path / "eval"
    assert evaluate_bag(["--bag", str(bag), "--checkpoint", str(checkpoint), "--labels",
                         str(bag / "labels.csv"), "--out", str(out), "--no-progress", "--set",
                         f"target_fps={FPS}", "inference_stride=1"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())

    loaded = load_checkpoint(checkpoint)
    splits = sets.build_split(sets.load_set(set_file), "test")
    config = evaluation.EvalConfig(num_eval_clips=3, batch_size=4)
    result = evaluation.evaluate(loaded.model, splits, loaded.info.preprocess, config)

    for task in ("action", "gesture"):
        video = result.task(task).video
        assert metrics[task]["segments_scored"] == video.total == 2 * len(loaded.info.classes_of(
            task))
        assert metrics[task]["confusion_segments"] == video.confusion
        assert metrics[task]["segment_accuracy"] == pytest.approx(video.accuracy, abs=0.0)
    assert metrics["clips"] == 3 * 2 * (len(ACTIONS) + len(GESTURES))
    # A random model guesses: the check means something only if its answers vary.
    columns = zip(*metrics["action"]["confusion_segments"], strict=True)
    assert sum(1 for column in columns if sum(column)) > 1
