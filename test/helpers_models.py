"""Small model configs for fast CPU tests."""

from pathlib import Path

from mtl_perception.models import ModelConfig


def tiny_config(method: str = "hps", **overrides: object) -> ModelConfig:
    """Width-4 R3D-18 with two tasks (one for STL), small enough for millisecond forwards."""
    tasks = (
        {"task_names": ("action",), "num_classes": (5,)}
        if method == "stl"
        else {
            "task_names": ("action", "gesture"),
            "num_classes": (5, 7),
        }
    )
    settings = {"method": method, "width": 4, **tasks, **overrides}
    return ModelConfig(**settings)  # type: ignore[arg-type]


def write_tiny_checkpoint(path: Path) -> Path:
    """A width-4 HPS checkpoint (action 3 classes, gesture 4; 4-frame clips of 32x32)
    for tests that start the real node: milliseconds per forward on a CPU."""
    from mtl_perception.checkpoint import CheckpointInfo, save_checkpoint
    from mtl_perception.models import build_model
    from mtl_perception.preprocess import PreprocessConfig

    config = ModelConfig(width=4, task_names=("action", "gesture"), num_classes=(3, 4))
    info = CheckpointInfo(
        model=config,
        class_names=(("wave", "walk", "sit"), ("one", "two", "three", "four")),
        preprocess=PreprocessConfig(clip_length=4, resize=(32, 32), crop=(32, 32)),
    )
    save_checkpoint(path, build_model(config), info)
    return path
