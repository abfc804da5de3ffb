"""Which frames make a clip: pure index arithmetic, no I/O (so it is easy to test).

A clip is `clip_length` frames `step` apart. Positions are chosen inside the
labelled segment `[start, end)` of a video (end exclusive; NVGesture's
`color:` field; `end=None` means the whole video), so a clip never shows
frames outside the labelled gesture.

- training: a uniformly random start among all positions where the clip fits;
- centre: the middle position (clip accuracy, METHODS.md section 4);
- evenly spaced: `num_clips` starts at the centres of equal bins over the
  positions (video accuracy), so one clip equals the centre clip.

A segment shorter than the clip's span (`(clip_length - 1) * step + 1`) is
loop-padded: the clip starts at the segment's first frame and its indices wrap
around within the segment. Always starting there (rather than at a random
phase of the loop) keeps the motion in order up to the one seam; every mode
then gives the same clip for a short segment, as in mmaction2's
`SampleFrames(out_of_bound_opt="loop")`.

A segment end past the video's last frame is clipped to the video (a list
that claims more frames than the file holds still trains on what exists).
"""

from __future__ import annotations

import numpy as np


def clip_span(clip_length: int, step: int) -> int:
    """Frames covered from a clip's first to its last frame, inclusive."""
    _check(clip_length, step)
    return (clip_length - 1) * step + 1


def segment_bounds(num_frames: int, start: int = 0, end: int | None = None) -> tuple[int, int]:
    """The usable `[start, end)` of a video: `end` clipped to the frame count."""
    if num_frames < 1:
        raise ValueError(f"a video needs at least one frame, got {num_frames}")
    stop = num_frames if end is None else min(end, num_frames)
    if start < 0 or start >= stop:
        raise ValueError(
            f"segment [{start}, {end}) holds no frame of a {num_frames}-frame video"
        )
    return start, stop


def clip_at(offset: int, clip_length: int, step: int, start: int, end: int) -> list[int]:
    """The clip starting `offset` frames into `[start, end)`, wrapping inside it."""
    length = end - start
    return [start + (offset + k * step) % length for k in range(clip_length)]


def max_offset(first: int, stop: int, clip_length: int, step: int) -> int:
    """The last start offset at which the clip fits in `[first, stop)` (0 when it does not)."""
    return max(stop - first - clip_span(clip_length, step), 0)


def training_clip_indices(
    num_frames: int,
    clip_length: int,
    step: int,
    rng: np.random.Generator,
    start: int = 0,
    end: int | None = None,
) -> list[int]:
    """A clip at a uniformly random position in the segment (loop-padded if short).

    Draws one integer from `rng` when the clip has room to move, none otherwise.
    """
    first, stop = segment_bounds(num_frames, start, end)
    room = max_offset(first, stop, clip_length, step)
    offset = int(rng.integers(0, room + 1)) if room > 0 else 0
    return clip_at(offset, clip_length, step, first, stop)


def centre_clip_indices(
    num_frames: int, clip_length: int, step: int, start: int = 0, end: int | None = None
) -> list[int]:
    """The clip in the middle of the segment; ties (odd room) go to the earlier frame."""
    first, stop = segment_bounds(num_frames, start, end)
    room = max_offset(first, stop, clip_length, step)
    return clip_at(room // 2, clip_length, step, first, stop)


def evenly_spaced_clips(
    num_frames: int,
    clip_length: int,
    step: int,
    num_clips: int,
    start: int = 0,
    end: int | None = None,
) -> list[list[int]]:
    """`num_clips` clips at the centres of equal bins over the possible start offsets.

    With `room + 1` possible offsets the j-th clip starts at the bin centre
    `floor(((2j + 1) * (room + 1) - num_clips) / (2 * num_clips))`; for one clip
    that is `room // 2`, the centre clip. Fewer offsets than clips repeat clips.
    """
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")
    first, stop = segment_bounds(num_frames, start, end)
    room = max_offset(first, stop, clip_length, step)
    offsets = [
        min(max(((2 * j + 1) * (room + 1) - num_clips) // (2 * num_clips), 0), room)
        for j in range(num_clips)
    ]
    return [clip_at(offset, clip_length, step, first, stop) for offset in offsets]


def _check(clip_length: int, step: int) -> None:
    if clip_length < 1:
        raise ValueError(f"clip_length must be >= 1, got {clip_length}")
    if step < 1:
        raise ValueError(f"frame step must be >= 1, got {step}")


# -- uniform sampling (the paper: "downsampled to a fixed length of 32 frames per video") --
#
# The segment's n frames are cut into `clip_length` equal bins, [k n / L, (k + 1) n / L),
# and the clip takes one frame from each bin: so the clip covers the whole labelled
# video or interval whatever its length. A segment shorter than the clip repeats
# frames (each frame then fills one or more bins, in order). All arithmetic is in
# integers, so the indices are exact on every platform.


def uniform_clip_indices(
    num_frames: int,
    clip_length: int,
    rng: np.random.Generator | None,
    start: int = 0,
    end: int | None = None,
) -> list[int]:
    """One frame per bin; training (`rng`) jitters all bins by one shared random phase.

    With `rng` the clip draws one integer `r` in `[0, n)` and frame k is
    `floor((k n + r) / L)`: the same spacing, shifted anywhere within a bin
    (the per-sample jitter). Without `rng` it is the evaluation clip: bin
    centres, `floor((2k + 1) n / (2L))`.
    """
    first, stop = segment_bounds(num_frames, start, end)
    _check(clip_length, 1)
    n = stop - first
    if rng is None:
        return [first + ((2 * k + 1) * n) // (2 * clip_length) for k in range(clip_length)]
    r = int(rng.integers(0, n)) if n > 1 else 0
    return [first + (k * n + r) // clip_length for k in range(clip_length)]


def uniform_evenly_spaced_clips(
    num_frames: int,
    clip_length: int,
    num_clips: int,
    start: int = 0,
    end: int | None = None,
) -> list[list[int]]:
    """`num_clips` uniform clips at evenly spaced phases within the bins (video accuracy).

    Clip j takes phase `(2j + 1) n / (2 num_clips)`: frame k is
    `floor((2 N k n + (2j + 1) n) / (2 N L))`; for one clip that is the
    evaluation clip of `uniform_clip_indices`.
    """
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")
    first, stop = segment_bounds(num_frames, start, end)
    _check(clip_length, 1)
    n, big = stop - first, 2 * num_clips * clip_length
    return [
        [first + (2 * num_clips * k * n + (2 * j + 1) * n) // big for k in range(clip_length)]
        for j in range(num_clips)
    ]
