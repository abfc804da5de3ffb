"""Frame reuse on a causal model: CPU per result, reusing frames against whole clips.

Run from the project root:
`.venv/bin/python bench/frame_reuse.py --save bench/results/frame_reuse.json`

For each case (arch causal_r18, width, clip frames x height x width, HPS with
the synthetic set's 7 + 8 classes and a gate, frame differences, random
weights: cost does not depend on them), one camera's stream of `--frames`
random frames goes through `StreamPipeline` offline at `inference_stride` 2,
once with frame reuse (the default for a causal model in PyTorch) and once
scoring whole clips (reuse switched off), interleaved A B A B over
`--repeats` rounds on one thread. Figures: CPU-seconds of the scoring thread
per result (`time.thread_time` around the pipeline's scoring of the whole
stream: decoding and preprocessing are the same on both sides and left
out), median over rounds, the whole-clips / reuse ratio per round (median
and spread), and the largest difference between the two sides' class
probabilities (the results must agree to rounding).
The last line printed is the JSON object.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Any

from hostinfo import project_first

project_first()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from hostinfo import cpu_model, report  # noqa: E402

from mtl_perception.checkpoint import CheckpointInfo  # noqa: E402
from mtl_perception.models import ModelConfig, build_model  # noqa: E402
from mtl_perception.preprocess import PreprocessConfig  # noqa: E402
from mtl_perception.stream import FrameHeader, StreamConfig, StreamPipeline  # noqa: E402
from mtl_perception.stream.frame_reuse import FrameReuse  # noqa: E402


def case_model(width: int, frames: int, height: int, wide: int) -> tuple[Any, CheckpointInfo]:
    config = ModelConfig(method="hps", arch="causal_r18", width=width, num_classes=(7, 8),
                         frame_differences=True, gate=True)
    torch.manual_seed(0)
    model = build_model(config).eval()
    names = tuple(tuple(f"{t}{i}" for i in range(n))
                  for t, n in zip(config.task_names, config.num_classes))
    preprocess = PreprocessConfig(clip_length=frames, resize=(height, wide), crop=(height, wide))
    return model, CheckpointInfo(config, names, preprocess)


def run(model: Any, info: CheckpointInfo, video: np.ndarray, reuse: bool
        ) -> tuple[float, list[np.ndarray]]:
    """(CPU-s of scoring, per-result probabilities) for one pass over the stream."""
    results: list[Any] = []
    pipeline = StreamPipeline(model, info, StreamConfig(target_fps=10, inference_stride=2),
                              realtime=False, on_result=results.append)
    assert isinstance(pipeline._reuse, FrameReuse), "a causal model in PyTorch reuses frames"
    if not reuse:
        pipeline._reuse = None  # whole clips through the engine, as any other arch
    score = pipeline._score
    spent = [0.0]

    def timed(batch: Any) -> Any:
        start = time.thread_time()
        out = score(batch)
        spent[0] += time.thread_time() - start
        return out

    pipeline._score = timed  # type: ignore[method-assign]
    for t, frame in enumerate(video):
        pipeline.push_frame("cam", frame, FrameHeader(t * 100_000_000, "cam"))
    pipeline.flush()
    probabilities = [np.concatenate([r.tasks[k].probabilities for k in r.tasks]) for r in results]
    return spent[0], probabilities


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--save", type=Path, default=None)
    parser.add_argument("--cases", nargs="+", default=["16:8:48:64", "16:16:112:112"],
                        help="WIDTH:FRAMES:HEIGHT:WIDTH")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    result: dict[str, Any] = {"cpu": cpu_model(), "logical_cpus": os.cpu_count(), "threads": 1,
                              "torch": torch.__version__, "stride": 2,
                              "load_average_start": [round(v, 2) for v in os.getloadavg()],
                              "cases": {}}
    for case in args.cases:
        width, frames, height, wide = (int(v) for v in case.split(":"))
        model, info = case_model(width, frames, height, wide)
        rng = np.random.default_rng(0)
        video = rng.integers(0, 256, (args.frames, height, wide, 3), dtype=np.uint8)
        times: dict[bool, list[float]] = {True: [], False: []}
        worst = 0.0
        for _ in range(args.repeats):
            outputs = {}
            for reuse in (True, False):
                seconds, outputs[reuse] = run(model, info, video, reuse)
                times[reuse].append(seconds)
            worst = max(worst, max(float(np.abs(a - b).max())
                                   for a, b in zip(outputs[True], outputs[False], strict=True)))
        results = len(outputs[True])
        ratios = [b / a for a, b in zip(times[True], times[False])]
        entry = {
            "arch": "causal_r18", "width": width, "clip": [frames, height, wide],
            "results": results,
            "reuse_cpu_ms_per_result": round(1e3 * statistics.median(times[True]) / results, 2),
            "clips_cpu_ms_per_result": round(1e3 * statistics.median(times[False]) / results, 2),
            "clips_over_reuse": round(statistics.median(ratios), 2),
            "clips_over_reuse_spread": [round(min(ratios), 2), round(max(ratios), 2)],
            "max_abs_probability_difference": worst,
        }
        result["cases"][case] = entry
        print(f"{case}: {entry}", flush=True)
    result["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    report(result, args.save)


if __name__ == "__main__":
    main()
