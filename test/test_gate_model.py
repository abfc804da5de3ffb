"""The task gate on the model side: the contract's outputs, checkpoints with and without it."""

import json
from pathlib import Path

import pytest
import torch
from helpers_models import tiny_config
from safetensors import safe_open
from safetensors.torch import load_file

from mtl_perception.checkpoint import (
    CheckpointInfo,
    load_checkpoint,
    read_checkpoint_info,
    save_checkpoint,
)
from mtl_perception.models import ModelConfig, build_model
from mtl_perception.models.gate import gate_classes, gate_input
from mtl_perception.preprocess import PreprocessConfig

DATA = Path(__file__).parent / "data"
CLIPS = torch.randn(3, 3, 8, 32, 32, generator=torch.Generator().manual_seed(5))
CLASSES = (("a", "b", "c", "d", "e"), ("p", "q", "r", "s", "t", "u", "v"))
OLD_KEYS = {"method", "arch", "width", "trainable_stages", "task_names", "num_classes",
            "cross_stitch_share", "cross_stitch_lr_multiplier", "frame_differences"}


def _metadata(path: Path) -> dict:
    with safe_open(str(path), framework="pt") as handle:
        return json.loads(handle.metadata()["mtl_perception"])


@pytest.mark.numerics
@pytest.mark.parametrize("method", ["hps", "sps", "lws"])
def test_checkpoint_written_before_the_gate_loads_and_scores_bitwise(method):
    """Files written by the code before the gate (test/data/old_*.safetensors): no gate,
    and the same scores as the file's own tensors in a model built without the gate.

    Both sides are computed here, in this process, so they agree to the last bit on any
    CPU. The scores that code stored (old_checkpoints.json) came from another machine,
    whose kernels sum in another order: they are compared within 1e-4 of the largest
    score (float32 reordering over a few thousand products moves the last ~3 digits of
    7, i.e. ~1e-5 relative; a wrong weight moves them by the score's own size)."""
    expected = json.loads((DATA / "old_checkpoints.json").read_text())
    path = DATA / f"old_{method}.safetensors"
    loaded = load_checkpoint(path)
    assert loaded.model.gate is None and loaded.info.model.gate is False
    stored = _metadata(path)["model"]
    reference = build_model(ModelConfig(**{key: stored[key] for key in OLD_KEYS})).eval()
    reference.load_state_dict(load_file(str(path)), strict=True)
    clips = torch.randn(*expected["clips_shape"],
                        generator=torch.Generator().manual_seed(expected["clips_seed"]))
    with torch.no_grad():
        scores = loaded.model.score_all(clips)
        reference_scores = reference.score_all(clips)
    assert len(scores) == 2  # no gate element
    assert all(torch.equal(a, b) for a, b in zip(scores, reference_scores))
    for got, old in zip(scores, expected["scores"][method]):
        old_tensor = torch.tensor(old, dtype=torch.float64)
        scale = float(old_tensor.abs().max())
        assert torch.allclose(got.double().flatten(), old_tensor, rtol=0, atol=1e-4 * scale)


@pytest.mark.parametrize("method", ["hps", "sps", "lws"])
def test_gate_adds_one_output_and_leaves_the_task_scores_alone(method):
    torch.manual_seed(0)
    plain = build_model(tiny_config(method)).eval()
    torch.manual_seed(0)
    gated = build_model(tiny_config(method, gate=True)).eval()
    assert plain.gate is None
    with torch.no_grad():
        a, b = plain.score_all(CLIPS), gated.score_all(CLIPS)
    assert len(a) == 2 and len(b) == 3
    assert b[-1].shape == (3, 3)  # (N, num_tasks + 1): action, gesture, none
    assert all(torch.equal(x, y) for x, y in zip(a, b[:2]))  # built last: same init
    assert gate_classes(gated.task_names) == ("action", "gesture", "none")


def test_gate_reads_the_mean_of_the_columns_for_sps_and_the_shared_features_for_hps():
    sps = build_model(tiny_config("sps", gate=True)).eval()
    with torch.no_grad():
        columns = sps.task_features(CLIPS)
        assert torch.equal(sps.gate_features(CLIPS), (columns[0] + columns[1]) / 2)
        hps = build_model(tiny_config("hps", gate=True)).eval()
        shared = hps.features(CLIPS)
        assert torch.equal(hps.gate_features(CLIPS), shared)
    same = torch.ones(2, 3)
    assert gate_input([same, same]) is same


def test_forward_gated_scores_none_clips_with_the_gate_only():
    model = build_model(tiny_config("hps", gate=True)).eval()
    ids = torch.tensor([0, 2, 1])  # 2 = none
    with torch.no_grad():
        logits, gate = model.forward_gated(CLIPS, ids)
    assert [tuple(x.shape) for x in logits] == [(1, 5), (1, 7)]
    assert gate.shape == (3, 3)
    with pytest.raises(ValueError, match=r"task ids must be in 0\.\.1"):
        model(CLIPS, ids)  # the paper's forward still refuses a none clip


def test_stl_has_no_gate():
    with pytest.raises(ValueError, match="no task gate"):
        ModelConfig(method="stl", task_names=("action",), num_classes=(3,), gate=True)


def test_gated_checkpoint_round_trip_and_plain_metadata_unchanged(tmp_path):
    preprocess = PreprocessConfig(clip_length=8, resize=(36, 48), crop=(32, 32))
    for gate in (False, True):
        config = tiny_config("sps", gate=gate)
        model = build_model(config).eval()
        if gate:
            with torch.no_grad():
                model.gate.norm.running_mean.fill_(0.25)
        path = tmp_path / f"gate_{gate}.safetensors"
        save_checkpoint(path, model, CheckpointInfo(config, CLASSES, preprocess))
        stored = _metadata(path)["model"]
        assert set(stored) == (OLD_KEYS | {"gate"} if gate else OLD_KEYS)  # defaults left out
        assert read_checkpoint_info(path).model == config
        loaded = load_checkpoint(path).model
        with torch.no_grad():
            want, got = model.score_all(CLIPS), loaded.score_all(CLIPS)
        assert len(got) == 2 + gate
        assert all(torch.equal(x, y) for x, y in zip(want, got))


def test_task_agnostic_accuracy_on_a_hand_case():
    """Five clips: right task and class; right task, wrong class; wrong task (right class
    by the true head); a none clip called gesture; a none clip called none."""
    import numpy as np

    from training.evaluation.gate_scores import GateScores, tally_gated

    counts = [np.zeros((2, 2), np.int64), np.zeros((3, 3), np.int64)]
    gate = np.zeros((3, 3), np.int64)
    agnostic = np.zeros((2, 2), np.int64)
    task_ids = np.array([0, 0, 1, 2, 2])
    labels = np.array([1, 0, 2, 0, 0])
    heads = [np.array([1, 1, 0, 0, 0]), np.array([0, 0, 2, 1, 1])]
    chosen = np.array([0, 0, 0, 1, 2])
    tally_gated(counts, gate, agnostic, task_ids, labels, heads, chosen)
    scores = GateScores(["action", "gesture", "none"], gate.tolist(), *agnostic.tolist())
    assert scores.confusion == [[2, 0, 0], [1, 0, 0], [0, 1, 1]]
    assert scores.accuracy == 3 / 5  # gate right on clips 1, 2 and 5
    # task-given: clip 1 right, clip 2 wrong, clip 3 right -> 2/3; agnostic: only clip 1
    assert counts[0].trace() + counts[1].trace() == 2
    assert scores.task_agnostic_accuracy == 1 / 3
    assert scores.to_dict()["task_agnostic_per_task"] == {"action": 0.5, "gesture": 0.0}
