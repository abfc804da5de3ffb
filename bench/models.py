"""Dual-task inference cost of HPS, SPS and LWS against one STL forward.

Run from the project root: `.venv/bin/python bench/models.py [--width N] [--frames N]`.
Times what the live node does per clip batch, scoring every clip with both
task heads (`score_all`), for batch 1 and batch 8, and divides by one STL
r3d_18 forward at the same width. `two_stl` is the design this project
replaces: two single-task networks, one per task. Models are timed
interleaved, repeat by repeat, so that drift in machine speed hits all alike;
each figure is the median over repeats. The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from hostinfo import cpu_model

from mtl_perception.models import ModelConfig, MultiTaskModel, build_model
from mtl_perception.models.config import Method


def build(method: Method, width: int, num_classes: tuple[int, int] = (101, 249)) -> MultiTaskModel:
    if method == "stl":
        config = ModelConfig(method="stl", width=width, task_names=("action",), num_classes=(101,))
    else:
        config = ModelConfig(method=method, width=width, num_classes=num_classes)
    return build_model(config).eval()


def params(model: torch.nn.Module) -> dict[str, int]:
    return {
        "total": sum(p.numel() for p in model.parameters()),
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }


def time_once(run: object, clips: torch.Tensor, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    run(clips)  # type: ignore[operator]
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()}, {torch.get_num_threads()} threads"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=64, help="backbone base width (64 = paper)")
    parser.add_argument("--frames", type=int, default=32, help="clip length")
    parser.add_argument("--size", type=int, default=112, help="crop size (pixels)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--half", action="store_true", help="fp16 autocast (GPU)")
    parser.add_argument(
        "--save", type=Path, default=None,
        help="also write the JSON here (the committed one: bench/results/models.json)",
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)

    stl = build("stl", args.width).to(device)
    stl_b = build("stl", args.width).to(device)
    models = {m: build(m, args.width).to(device) for m in ("hps", "sps", "lws")}
    runners = {
        "stl": stl.score_all,
        "two_stl": lambda x: (stl.score_all(x), stl_b.score_all(x)),
        **{name: model.score_all for name, model in models.items()},
    }
    result: dict[str, object] = {
        "device": machine(device),
        "torch": torch.__version__,
        "width": args.width,
        "frames": args.frames,
        "size": args.size,
        "params": {"stl": params(stl), **{n: params(m) for n, m in models.items()}},
        "seconds": {},
    }
    autocast = torch.autocast(device.type, dtype=torch.float16, enabled=args.half)
    for batch in args.batches:
        clips = torch.randn(batch, 3, args.frames, args.size, args.size, device=device)
        times: dict[str, list[float]] = {name: [] for name in runners}
        with torch.inference_mode(), autocast:
            for run in runners.values():  # warm-up: allocator, kernels, caches
                run(clips)
            for _ in range(args.repeats):
                for name, run in runners.items():
                    times[name].append(time_once(run, clips, device))
        medians = {name: statistics.median(t) for name, t in times.items()}
        result["seconds"][f"batch{batch}"] = medians  # type: ignore[index]
        for name in ("hps", "sps", "lws", "two_stl"):
            result[f"{name}_over_stl_batch{batch}"] = round(medians[name] / medians["stl"], 3)
        print(f"batch {batch}: " + ", ".join(f"{n} {s * 1000:.0f} ms" for n, s in medians.items()))
    # Headline ratios: the worse of the batch sizes, so a target met here is met for both.
    for name in ("hps", "sps", "lws", "two_stl"):
        result[f"{name}_over_stl"] = max(
            result[f"{name}_over_stl_batch{b}"]
            for b in args.batches  # type: ignore[type-var]
        )
    text = json.dumps(result)
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_text(json.dumps(result, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
