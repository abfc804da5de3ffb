"""How many cameras' clips one forward pass scores on the CPU, when `max_batch` is 0
(no rclpy here; the node's configure calls it)."""

from __future__ import annotations

from collections.abc import Callable

# A pass over every camera's clip must cost at most this share of one pass per
# clip to be chosen: a margin against timing noise on a busy machine.
BATCH_CHEAPER = 0.8
# Passes of each size; the fastest counts (other jobs and lazy set-up only ever
# make a pass slower). Configure takes that many passes longer: about 4.5 s
# for a full-width r3d_18 and 4 cameras on 2 CPU cores, 0.1 s for the demo's.
BATCH_REPEATS = 2


def cameras_batch(forward_ms: Callable[[int], float], cameras: int,
                  repeats: int = BATCH_REPEATS) -> tuple[int, str]:
    """`max_batch` 0 on the CPU: `cameras` when one forward pass of every camera's clip
    costs clearly less than one pass per clip, else 1 (the core's CPU default); and the
    line to log. `forward_ms(n)`: one pass of n clips, in ms (the engine's warm-up).

    Why measure: whether a batch is cheaper per clip depends on the model. The
    demo-size model takes 11-15 ms for 4 clips against 9 ms for one (4 cameras:
    p95 28 instead of 80 ms, bench/results/ros_live.json); a full-width r3d_18
    takes 11x one clip's time for 8 (bench/results/models.json)."""
    if cameras < 2:
        return 1, ""
    one = min(forward_ms(1) for _ in range(repeats))
    every = min(forward_ms(cameras) for _ in range(repeats))
    together = every <= BATCH_CHEAPER * cameras * one
    choice = (f"scoring the {cameras} cameras' clips in one pass (max_batch {cameras})"
              if together else "one clip per pass, cameras taking turns (max_batch 1)")
    return (cameras if together else 1), (
        f"max_batch 0 on the CPU: one pass of {cameras} clips took {every:.1f} ms, of one "
        f"clip {one:.1f} ms (fastest of {repeats}): {choice}; set max_batch to choose")
