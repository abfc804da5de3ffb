"""`init:` across methods and `trainable_stages`: every tensor mapped, or one line refusing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mtl_perception.checkpoint import CheckpointInfo, load_checkpoint, save_checkpoint
from mtl_perception.models import ModelConfig, build_model
from mtl_perception.preprocess import PreprocessConfig
from training.train.finetune import InitError, init_from_checkpoint

TASKS = ("action", "gesture")
CLASSES = (("walk", "jump", "sit"), ("wave", "stop", "clap", "zig"))


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _config(method: str, stages: int) -> ModelConfig:
    return ModelConfig(method=method, width=4, trainable_stages=stages, task_names=TASKS,
                       num_classes=(3, 4))


def _checkpoint(tmp_path: Path, method: str, stages: int) -> Path:
    torch.manual_seed(3)
    model = build_model(_config(method, stages))
    with torch.no_grad():  # batch-norm statistics away from their defaults, so a copy shows
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.normal_(0, 0.1)
    path = tmp_path / f"{method}{stages}.safetensors"
    save_checkpoint(path, model.eval(), CheckpointInfo(
        model.config, CLASSES, PreprocessConfig(clip_length=4, resize=(32, 32), crop=(32, 32))))
    return path


def _fresh(method: str, stages: int) -> torch.nn.Module:
    torch.manual_seed(99)  # other random weights than the checkpoint's
    return build_model(_config(method, stages))


@pytest.mark.parametrize(("source", "target"), [
    (("hps", 2), ("hps", 3)),  # the case: layer2 was left random
    (("hps", 3), ("hps", 2)),
    (("hps", 2), ("sps", 2)),
    (("hps", 2), ("lws", 2)),
    (("sps", 2), ("sps", 3)),
    (("lws", 2), ("sps", 2)),
])
def test_another_method_or_stage_count_answers_as_the_checkpoint_at_step_0(
        tmp_path: Path, source: tuple[str, int], target: tuple[str, int]) -> None:
    """Every backbone tensor is copied, so the new model's scores are the checkpoint's:
    a tensor left at its random initialisation would change them."""
    path = _checkpoint(tmp_path, *source)
    model = _fresh(*target)
    record = init_from_checkpoint(model, CLASSES, path)
    assert record["heads"] == {"action": "kept", "gesture": "kept"}
    clip = torch.randn(3, 3, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    theirs = load_checkpoint(path).model.eval()
    with torch.no_grad():
        ours_scores = model.eval().score_all(clip)
        their_scores = theirs.score_all(clip)
    for a, b in zip(ours_scores, their_scores, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_hps_to_sps_columns_are_the_shared_backbone_and_stitches_the_identity(
        tmp_path: Path) -> None:
    path = _checkpoint(tmp_path, "hps", 2)
    source = load_checkpoint(path).model.state_dict()
    model = _fresh("sps", 2)
    init_from_checkpoint(model, CLASSES, path)
    state = model.state_dict()
    for t in range(2):
        key = f"columns.{t}.layer4.1.conv2.0.weight"
        assert torch.equal(state[key], source["stages.layer4.1.conv2.0.weight"]), key
    stitch = state["stitches.0.weight"]
    assert torch.equal(stitch[0, 0], torch.ones_like(stitch[0, 0]))
    assert torch.equal(stitch[0, 1], torch.zeros_like(stitch[0, 1]))


@pytest.mark.parametrize(("source", "target"), [(("sps", 2), ("hps", 2)),
                                                (("hps", 3), ("sps", 2))])
def test_per_task_copies_onto_one_shared_tensor_are_refused_in_one_line(
        tmp_path: Path, source: tuple[str, int], target: tuple[str, int]) -> None:
    path = _checkpoint(tmp_path, *source)
    if target == ("sps", 2):  # HPS 3 -> SPS 2 maps fine (shared layer2 -> shared prefix)
        init_from_checkpoint(_fresh(*target), CLASSES, path)
        return
    with pytest.raises(InitError) as error:
        init_from_checkpoint(_fresh(*target), CLASSES, path)
    message = str(error.value)
    assert "\n" not in message
    assert "one copy per task (2) and this model one shared tensor" in message
    assert "fine-tune with method=sps model.trainable_stages=2" in message
