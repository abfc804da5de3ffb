"""Small model configs for fast CPU tests."""

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
