"""Model family: shapes, frozen stages, parameter counts, torchvision weight compatibility."""

import pytest
import torch
from helpers_models import tiny_config
from torchvision.models.video import r3d_18 as torchvision_r3d_18

from mtl_perception.models import ModelConfig, build_model
from mtl_perception.models.backbone import R3D, load_backbone_state, load_pretrained

CLIPS = torch.randn(3, 3, 8, 32, 32, generator=torch.Generator().manual_seed(0))


def trainable(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("method", ["stl", "hps", "sps", "lws"])
def test_output_shapes_for_mixed_batch_and_all_tasks(method: str) -> None:
    config = tiny_config(method)
    model = build_model(config).eval()
    task_ids = torch.zeros(3, dtype=torch.long) if method == "stl" else torch.tensor([1, 0, 1])
    per_task = model(CLIPS, task_ids)
    expected_rows = [int((task_ids == t).sum()) for t in range(config.num_tasks)]
    assert [tuple(x.shape) for x in per_task] == list(zip(expected_rows, config.num_classes))
    assert [tuple(x.shape) for x in model.score_all(CLIPS)] == [(3, c) for c in config.num_classes]


@pytest.mark.parametrize("method", ["stl", "hps", "sps", "lws"])
def test_mixed_forward_equals_scoring_every_clip_with_every_task(method: str) -> None:
    model = build_model(tiny_config(method)).eval()
    task_ids = torch.zeros(3, dtype=torch.long) if method == "stl" else torch.tensor([1, 0, 1])
    with torch.no_grad():
        per_task = model(CLIPS, task_ids)
        everything = model.score_all(CLIPS)
    for task, logits in enumerate(per_task):
        torch.testing.assert_close(logits, everything[task][task_ids == task], rtol=1e-5, atol=1e-6)


def test_task_ids_are_validated() -> None:
    model = build_model(tiny_config("hps"))
    with pytest.raises(ValueError, match="one task id per clip"):
        model(CLIPS, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="task ids must be in 0..1"):
        model(CLIPS, torch.tensor([0, 1, 2]))


@pytest.mark.parametrize("stages", [1, 2, 3])
def test_frozen_prefix_stays_frozen_and_in_eval_mode(stages: int) -> None:
    model = build_model(tiny_config("hps", trainable_stages=stages)).train()
    frozen_names = ["stem", "layer1", "layer2", "layer3", "layer4"][: 5 - stages]
    assert list(model.prefix.stages._modules) == frozen_names
    assert all(not p.requires_grad for p in model.prefix.parameters())
    assert all(not m.training for m in model.prefix.modules())
    assert all(p.requires_grad for p in model.stages.parameters())
    assert all(m.training for m in model.stages.modules())
    running_mean = model.prefix.stages.stem[1].running_mean.clone()
    model(CLIPS, torch.tensor([0, 1, 0]))
    torch.testing.assert_close(model.prefix.stages.stem[1].running_mean, running_mean)


def test_frozen_prefix_gets_no_gradient() -> None:
    model = build_model(tiny_config("sps")).train()
    loss = sum(x.sum() for x in model(CLIPS, torch.tensor([0, 1, 0])))
    loss.backward()
    assert all(p.grad is None for p in model.prefix.parameters())
    assert all(p.grad is not None for p in model.columns.parameters())


def test_trainable_parameter_counts_match_the_paper_at_full_width() -> None:
    def count(method: str, arch: str = "r3d_18", tasks: tuple[int, ...] = (101, 249)) -> int:
        names = tuple(f"t{i}" for i in range(len(tasks)))
        config = ModelConfig(method=method, arch=arch, task_names=names, num_classes=tasks)
        return trainable(build_model(config))

    stl18, stl34 = count("stl", tasks=(101,)), count("stl", "r3d_34", tasks=(101,))
    second_head = 512 * 249 + 249
    hps, sps, lws = count("hps"), count("sps"), count("lws")
    assert abs(hps - (stl18 + second_head)) / (stl18 + second_head) < 0.01
    assert 1.9 < sps / stl18 < 2.1 and abs(sps - stl34) / stl34 < 0.15
    assert 1.9 < lws / stl18 < 2.1 and abs(lws - stl34) / stl34 < 0.15
    # layer3 + layer4 of R3D-18 by hand: convs, downsample convs and BatchNorm affine terms.
    layer3 = 27 * 128 * 256 + 3 * 27 * 256 * 256 + 128 * 256 + 5 * 2 * 256
    layer4 = 27 * 256 * 512 + 3 * 27 * 512 * 512 + 256 * 512 + 5 * 2 * 512
    assert stl18 == layer3 + layer4 + 512 * 101 + 101


def test_torchvision_kinetics_state_dict_loads_unchanged(tmp_path) -> None:
    reference = torchvision_r3d_18().eval()  # same architecture as the Kinetics-400 weights
    state = reference.state_dict()
    ours = R3D("r3d_18", 64, num_classes=400).eval()
    ours.load_state_dict(state, strict=True)
    clip = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(clip), reference(clip))
    # Through a file on disk, as a user's downloaded r3d_18-b3b3357e.pth would come.
    path = tmp_path / "r3d_18-b3b3357e.pth"
    torch.save(state, path)
    model = build_model(ModelConfig(method="sps"), backbone_weights=load_pretrained(path))
    for column in model.columns:
        torch.testing.assert_close(column[0][0].conv1[0].weight, state["layer3.0.conv1.0.weight"])
    torch.testing.assert_close(model.prefix.stages.stem[0].weight, state["stem.0.weight"])


def test_pretrained_weights_of_the_wrong_width_are_refused() -> None:
    state = R3D("r3d_18", 8).state_dict()
    with pytest.raises(
        ValueError,
        match=r"width 16: \d+ with wrong shape \(first: layer1.0.conv1.0.weight is "
        r"\(8, 8, 3, 3, 3\), the model has \(16, 16, 3, 3, 3\)\)",
    ):
        load_backbone_state(R3D("r3d_18", 16), state)
    with pytest.raises(ValueError, match="missing"):
        load_backbone_state(R3D("r3d_34", 8), state)


def test_pretrained_weights_of_another_precision_are_refused_not_cast() -> None:
    half = {
        k: v.half() if v.is_floating_point() else v
        for k, v in R3D("r3d_18", 8).state_dict().items()
    }
    with pytest.raises(
        ValueError,
        match=r"with wrong dtype \(first: .* is torch.float16, the model needs torch.float32",
    ):
        load_backbone_state(R3D("r3d_18", 8), half)


def test_config_rejects_inconsistent_settings() -> None:
    with pytest.raises(ValueError, match="'stl' trains one task"):
        ModelConfig(method="stl")
    with pytest.raises(ValueError, match="equal length"):
        ModelConfig(task_names=("a", "b"), num_classes=(3,))
    with pytest.raises(ValueError, match="trainable_stages must be in 0..5"):
        ModelConfig(trainable_stages=6)
    with pytest.raises(ValueError, match="cross_stitch_lr_multiplier must be > 0, got -1"):
        ModelConfig(method="sps", cross_stitch_lr_multiplier=-1.0)


@pytest.mark.parametrize("method", ["stl", "hps", "sps", "lws"])
def test_empty_batch_gives_empty_logits(method: str) -> None:
    config = tiny_config(method)
    model = build_model(config).eval()
    expected = [(0, c) for c in config.num_classes]
    assert [tuple(x.shape) for x in model(CLIPS[:0], torch.zeros(0, dtype=torch.long))] == expected
    assert [tuple(x.shape) for x in model.score_all(CLIPS[:0])] == expected


def test_unreadable_pretrained_safetensors_is_one_clear_error(tmp_path) -> None:
    path = tmp_path / "r3d.safetensors"
    path.write_bytes(b"\x00" * 4)
    with pytest.raises(ValueError, match="cannot read pretrained weights .*r3d.safetensors"):
        load_pretrained(path)
