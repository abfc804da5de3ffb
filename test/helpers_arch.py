"""Checks every backbone family must pass, shared by the X3D and causal_r18 tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import torch

from mtl_perception.checkpoint import CheckpointInfo, load_checkpoint, save_checkpoint
from mtl_perception.models import ModelConfig, build_model
from mtl_perception.preprocess import PreprocessConfig


def step_and_round_trip(config: ModelConfig, clips: torch.Tensor, task_ids: torch.Tensor,
                        tmp_path: Path) -> set[str]:
    """One Adam step on `clips` (each task's logits shaped by its samples), then a checkpoint
    written and read back with bitwise the same scores; the names of the tensors the step
    changed."""
    torch.manual_seed(0)
    model = build_model(config).train()
    optimizer = torch.optim.Adam(model.parameter_groups(1e-2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    logits = model(clips, task_ids)
    assert [tuple(t.shape) for t in logits] == [
        (int((task_ids == t).sum()), c) for t, c in enumerate(config.num_classes)]
    loss = sum(torch.nn.functional.cross_entropy(t, torch.zeros(len(t), dtype=torch.long))
               for t in logits if len(t))
    cast(torch.Tensor, loss).backward()
    optimizer.step()
    after = model.state_dict()
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    model.eval()
    names = tuple(tuple(f"{t}{i}" for i in range(n))
                  for t, n in zip(config.task_names, config.num_classes))
    side = clips.shape[-1]
    info = CheckpointInfo(config, names, PreprocessConfig(
        clip_length=clips.shape[2], resize=(side, side), crop=(side, side)))
    save_checkpoint(tmp_path / "m.safetensors", model, info)
    loaded = load_checkpoint(tmp_path / "m.safetensors")
    assert loaded.info.model.arch == config.arch
    with torch.no_grad():
        expected, got = model.score_all(clips), loaded.model.score_all(clips)
    assert len(got) == config.num_tasks + (1 if config.gate else 0)
    for a, b in zip(expected, got):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    return changed


def stitched_move(model: Any, clips: torch.Tensor) -> float:
    """How far action's logits move when only column 1 (gesture) changes: 0 unless the
    cross-stitch units mix the columns."""
    with torch.no_grad():
        action = model.score_all(clips)[0]
        for p in model.columns[1].parameters():
            p.mul_(1.5)
        return float((model.score_all(clips)[0] - action).abs().max())


def check_routes_decide(model: Any, clips: torch.Tensor) -> None:
    """Gesture routed through action's copies scores what those copies compute by hand,
    differs from its own route, and leaves action's scores unchanged."""
    with torch.no_grad():
        separate = model.score_all(clips)
        model.routing_probs[1, :, :] = torch.tensor([0.9, 0.1])
        shared = model.score_all(clips)
        x = model.prefix(clips)
        for copies in model.units:
            x = copies[0](x)
        by_hand = model.heads[1](model.pool(x).flatten(1))
    torch.testing.assert_close(shared[1], by_hand)
    assert float((shared[1] - separate[1]).abs().max()) > 1e-4  # the route decides
    torch.testing.assert_close(shared[0], separate[0])  # action's route is unchanged


def offset_moves(model: Any, clips: torch.Tensor) -> float:
    """How far action's scores move when the same image is added to every frame (0 with
    frame differences: it cancels)."""
    offset = torch.randn(1, 3, 1, *clips.shape[-2:], generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        a, b = model.eval().score_all(clips)[0], model.score_all(clips + offset)[0]
    return float((a - b).abs().max())
