"""Which clips the inference worker scores, and when: the pipeline's two modes.

`StreamPipeline` holds one schedule and calls it under its own lock:
- `Realtime` (the robot): each camera has one slot for its newest ready clip;
  a newer clip replaces an unscored one (counted in `clips_dropped`), so the
  worker always scores the freshest view and nothing queues without bound.
  `push()` never waits. On a GPU the ready clip of every camera goes into one
  forward pass; on the CPU, where a batch costs more per clip than single
  clips, one clip per pass, cameras taking turns (`max_batch` overrides both).
- `Offline` (bag evaluation): every clip is scored, in the order it was cut,
  in batches of `max_batch` (default 1): the same inputs give the same
  batches and so the same predictions every run. `push()` waits
  (back-pressure) while `offline_queue` clips are queued.
"""

from __future__ import annotations

from collections import deque

from mtl_perception.stream.camera import CameraState, Queued
from mtl_perception.stream.config import StreamConfig


class Realtime:
    realtime = True

    def __init__(self, cameras: dict[str, CameraState]) -> None:
        self._cameras = cameras
        self._batches_taken = 0  # batches handed to the forward pass so far

    def batch_size(self, config: StreamConfig, on_gpu: bool) -> int:
        """`max_batch`, or one clip per camera on a GPU and one on the CPU
        (bench/results/models.json: 8 r3d_18 clips in one batch take 11x one clip on CPU)."""
        if config.max_batch:
            return config.max_batch
        return max(1, len(self._cameras)) if on_gpu else 1

    def put(self, cam: CameraState, item: Queued) -> None:
        self.discard(cam)
        cam.pending = item

    def must_wait(self, config: StreamConfig, on_gpu: bool) -> bool:
        return False  # the robot's callbacks never wait for the model

    def ready(self, config: StreamConfig, on_gpu: bool, all_now: bool) -> bool:
        return any(cam.pending is not None for cam in self._cameras.values())

    def take(self, config: StreamConfig, on_gpu: bool) -> list[Queued]:
        cams = self._cameras
        waiting = [cam.pending for cam in cams.values() if cam.pending is not None]
        # When more cameras are ready than one batch holds: the camera served longest
        # ago first (round robin), so no camera starves while all produce clips.
        waiting.sort(key=lambda item: (cams[item.clip.camera].served,
                                       item.clip.frames[-1].arrival))
        batch = waiting[: self.batch_size(config, on_gpu)]
        for item in batch:
            cam = cams[item.clip.camera]
            cam.pending = None
            cam.served = self._batches_taken
        self._batches_taken += 1
        return batch

    def done_when_stopping(self) -> bool:
        return True  # unscored clips are dropped (`drop_all`), not scored

    def discard(self, cam: CameraState) -> None:
        """A camera's unscored clip is dropped (replaced, reset or stopped)."""
        if cam.pending is not None:
            cam.pending = None
            cam.counts["clips_dropped"] += 1

    def drop_all(self) -> None:
        """After the worker stopped: made == run + dropped."""
        for cam in self._cameras.values():
            self.discard(cam)

    def clear(self) -> None:
        pass


class Offline:
    realtime = False

    def __init__(self, cameras: dict[str, CameraState]) -> None:
        self._queue: deque[Queued] = deque()  # every clip, in order

    def batch_size(self, config: StreamConfig, on_gpu: bool) -> int:
        return config.max_batch or 1

    def put(self, cam: CameraState, item: Queued) -> None:
        self._queue.append(item)

    def must_wait(self, config: StreamConfig, on_gpu: bool) -> bool:
        # The limit is at least one batch, or the worker (waiting for a full batch)
        # and the pushing thread would wait on each other.
        return len(self._queue) >= max(config.offline_queue, self.batch_size(config, on_gpu))

    def ready(self, config: StreamConfig, on_gpu: bool, all_now: bool) -> bool:
        """A full batch, or any clip when `all_now` (flushing or stopping)."""
        return len(self._queue) >= (1 if all_now else self.batch_size(config, on_gpu))

    def take(self, config: StreamConfig, on_gpu: bool) -> list[Queued]:
        count = min(self.batch_size(config, on_gpu), len(self._queue))
        return [self._queue.popleft() for _ in range(count)]

    def done_when_stopping(self) -> bool:
        return not self._queue  # every clip is scored first

    def discard(self, cam: CameraState) -> None:
        pass  # clips already queued are scored: offline drops nothing

    def drop_all(self) -> None:
        pass

    def clear(self) -> None:
        self._queue.clear()


Schedule = Realtime | Offline
