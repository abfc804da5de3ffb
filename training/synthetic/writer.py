"""Write the synthetic set to disk in the published layouts, so the real readers load it.

Actions go out as UCF-101 (class folders of `v_<Class>_gGG_cCC.avi`, a
`ucfTrainTestlist/` with CRLF `classInd.txt`, `trainlist01.txt`,
`testlist01.txt`; whole groups are held out for test, as in UCF), gestures as
NVGesture (`Video_data/class_NN/subjectS_rR/sk_color.avi`, v2 list files whose
`color:` field bounds the gesture inside a longer video; whole subjects are
held out for test). A `set.yaml` ties both to the project's set loader.

A UCF group or an NVGesture subject is one actor, who performs every class;
clothes, place (one of a few shared locations), viewpoint and timing vary per
clip. Nothing about a clip's appearance is chosen with its class in mind.

Every clip is rendered from its own seed (derived from the set's seed and the
clip's identity, never from rendering order), so the output is the same for
any number of worker processes. MPEG-4 slice threading makes the bitstream
depend on the CPU count, so each encode runs pinned to one CPU.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import multiprocessing
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from training.datasets.video import write_video
from training.synthetic.motions import ACTION_CLASSES, GESTURE_CLASSES, KNOWN_GESTURE_CLASSES
from training.synthetic.output import (
    MANIFEST,
    finish,
    prepare,
    write_manifest,
)
from training.synthetic.scene import (
    Actor,
    Clip,
    Place,
    action_clip,
    gesture_clip,
    indoor_place,
    outdoor_place,
    random_actor,
)

log = logging.getLogger(__name__)

UCF_ROOT, UCF_LISTS = "UCF-101", "ucfTrainTestlist"
NV_ROOT = "nvGesture"
NV_TRAIN = "nvgesture_train_correct_cvpr2016_v2.lst"
NV_TEST = "nvgesture_test_correct_cvpr2016_v2.lst"
NV_CLASSES = "classes.txt"
SET_FILE = "set.yaml"  # the set config the project's loader reads
META_FILE = MANIFEST  # the settings that made the set and every file written (output.py)
LIST_FILES = (f"{UCF_LISTS}/classInd.txt", f"{UCF_LISTS}/trainlist01.txt",
              f"{UCF_LISTS}/testlist01.txt", f"{NV_ROOT}/{NV_TRAIN}", f"{NV_ROOT}/{NV_TEST}",
              f"{NV_ROOT}/{NV_CLASSES}")

SET_YAML = f"""name: synthetic
tasks:
  action:
    - format: ucf101
      root: {UCF_ROOT}
      annotations: {UCF_LISTS}
      split: 1
  gesture:
    - format: nvgesture
      root: {NV_ROOT}
      train_list: {NV_TRAIN}
      test_list: {NV_TEST}
      class_names: {NV_CLASSES}
"""


class SynthSettingsError(ValueError):
    """A synthetic-set setting out of range; `setting` names the field."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting


# (field, smallest, largest) of the integer settings
_INT_RANGES = (
    ("actions_per_class", 1, 10_000), ("gestures_per_class", 1, 10_000),
    ("width", 32, 4096), ("height", 24, 4096), ("frames", 8, 10_000),
    ("gesture_frames", 16, 10_000), ("seed", 0, 2**63 - 1), ("clips_per_group", 1, 1000),
    ("test_groups", 0, 10_000), ("reps_per_subject", 1, 1000), ("test_subjects", 0, 10_000),
    ("places", 1, 1000), ("rooms", 1, 1000), ("bit_rate", 10_000, 100_000_000),
)
_MAX_CLIP_GIB = 2.0


@dataclass(frozen=True)
class SynthSettings:
    """Everything that determines the output; the same settings give byte-identical files."""

    actions_per_class: int = 24
    gestures_per_class: int = 24
    width: int = 160
    height: int = 120
    frames: int = 48  # action clip length
    gesture_frames: int = 64  # whole gesture video, idle included
    fps: float = 25.0
    seed: int = 0
    clips_per_group: int = 2  # UCF: one group = one actor
    test_groups: int = 0  # groups 1..N are test; 0 = UCF's share (7 of 25), at least one
    reps_per_subject: int = 2  # NVGesture: subjectS_r0..r{N-1} per class
    test_subjects: int = 0  # the last N subjects are test; 0 = NVGesture's share (~31%)
    places: int = 6  # outdoor locations shared by all action classes (NTU-like setups)
    rooms: int = 4  # indoor locations shared by all gesture classes
    antialias: bool = True
    bit_rate: int = 400_000
    actions: tuple[str, ...] = ACTION_CLASSES
    gestures: tuple[str, ...] = GESTURE_CLASSES

    def __post_init__(self) -> None:
        # Upper bounds: far past any useful set, short of what exhausts memory or disk.
        for name, low, high in _INT_RANGES:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise SynthSettingsError(name, f"must be an integer, got {value!r}")
            if not low <= value <= high:
                word = "must be positive" if low == 1 and value < 1 else "must be in"
                raise SynthSettingsError(name, f"{word} {low}..{high}, got {value}")
        if self.width % 2 or self.height % 2:
            raise SynthSettingsError("width", f"size {self.width}x{self.height}: need even sides")
        if isinstance(self.fps, bool) or not isinstance(self.fps, (int, float)) or not (
                math.isfinite(self.fps) and 1.0 <= self.fps <= 1000.0):
            raise SynthSettingsError("fps", f"must be a finite number in 1..1000, got {self.fps}")
        longest = max(self.frames, self.gesture_frames)
        gib = longest * self.width * self.height * 3 / 2**30
        if gib > _MAX_CLIP_GIB:
            raise SynthSettingsError(
                "frames", f"{longest} frames at {self.width}x{self.height} need {gib:.1f} GiB "
                f"per clip (at most {_MAX_CLIP_GIB}); lower the frame counts or the size")
        if not isinstance(self.antialias, bool):
            raise SynthSettingsError("antialias", f"must be true or false, got {self.antialias!r}")
        for name, known in (("actions", ACTION_CLASSES), ("gestures", KNOWN_GESTURE_CLASSES)):
            chosen = getattr(self, name)
            if not chosen:
                raise SynthSettingsError(name, f"need at least one {name[:-1]} class")
            unknown = [n for n in chosen if n not in known]
            if unknown:
                raise SynthSettingsError(name, f"unknown {unknown}; known: {list(known)}")
            if len(set(chosen)) != len(chosen):
                raise SynthSettingsError(name, f"a class is named twice: {list(chosen)}")
        # An empty train or test list is a set nobody can use, and the readers refuse it.
        if self.test_group_count() >= self.n_groups:
            raise SynthSettingsError(
                "actions_per_class",
                f"{self.actions_per_class} action(s) per class at {self.clips_per_group} per "
                f"group make {self.n_groups} group(s), {self.test_group_count()} of them test: "
                "the train list would be empty (raise actions_per_class)")
        if self.test_subject_count() >= self.n_subjects:
            raise SynthSettingsError(
                "gestures_per_class",
                f"{self.gestures_per_class} gesture(s) per class at {self.reps_per_subject} per "
                f"subject make {self.n_subjects} subject(s), {self.test_subject_count()} of them "
                "test: the train list would be empty (raise gestures_per_class)")

    @property
    def n_groups(self) -> int:
        return -(-self.actions_per_class // self.clips_per_group)

    @property
    def n_subjects(self) -> int:
        return -(-self.gestures_per_class // self.reps_per_subject)

    def test_group_count(self) -> int:
        return self.test_groups or max(1, round(self.n_groups * 7 / 25))

    def test_subject_count(self) -> int:
        return self.test_subjects or max(1, round(self.n_subjects * 482 / 1532))


@dataclass(frozen=True)
class Job:
    """One video to render: its identity (which fixes its seed) and where it goes."""

    task: str  # "action" | "gesture"
    name: str
    label: int  # 0-based in the written class list
    index: int  # 0-based within its class
    rel_path: str  # relative to the set's root
    test: bool
    group: int = 0  # UCF group, or NVGesture subject (1-based)
    rep: int = 0  # UCF clip (1-based) or NVGesture repetition (0-based)


@dataclass
class Written:
    job: Job
    segment: tuple[int, int]
    seconds: float = field(default=0.0, compare=False)


def plan(settings: SynthSettings) -> list[Job]:
    """All videos of the set, in list-file order."""
    jobs = []
    n_test = settings.test_group_count()
    for label, name in enumerate(settings.actions):
        for i in range(settings.actions_per_class):
            g, c = i // settings.clips_per_group + 1, i % settings.clips_per_group + 1
            rel = f"{UCF_ROOT}/{name}/v_{name}_g{g:02d}_c{c:02d}.avi"
            jobs.append(Job("action", name, label, i, rel, g <= n_test, g, c))
    first_test = settings.n_subjects - settings.test_subject_count() + 1
    for label, name in enumerate(settings.gestures):
        for i in range(settings.gestures_per_class):
            s, r = i // settings.reps_per_subject + 1, i % settings.reps_per_subject
            rel = f"{NV_ROOT}/Video_data/class_{label + 1:02d}/subject{s}_r{r}/sk_color.avi"
            jobs.append(Job("gesture", name, label, i, rel, s >= first_test, s, r))
    return jobs


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


@functools.lru_cache(maxsize=64)
def _actor(seed: int, task: str, group: int) -> Actor:
    """The actor of UCF group `gGG` or NVGesture subject `S`, the same in every class.

    Were each class filmed with its own actors, a network would learn the actor.
    """
    return random_actor(_rng(seed, 1 if task == "action" else 3, group))


@functools.lru_cache(maxsize=32)
def _place(seed: int, task: str, index: int, size: tuple[int, int]) -> Place:
    """One of the few locations every class is filmed in.

    A handful of places shared by all classes (NTU's setups, NVGesture's one
    car) rather than a new place per clip: the background then says nothing
    about the class and a small network learns quickly to look past it.
    """
    if task == "action":
        return outdoor_place(_rng(seed, 5, index), size)
    return indoor_place(_rng(seed, 6, index), size)


def render_job(settings: SynthSettings, job: Job, with_mask: bool = False) -> Clip:
    """Render one job's frames in memory (tests use the mask as an oracle foreground)."""
    actor = _actor(settings.seed, job.task, job.group)
    size = (settings.width, settings.height)
    if job.task == "action":
        rng = _rng(settings.seed, 2, ACTION_CLASSES.index(job.name), job.index)
        place = _place(settings.seed, "action", int(rng.integers(settings.places)), size)
        return action_clip(job.name, actor, place, rng, size, settings.frames, settings.fps,
                           settings.antialias, with_mask)
    rng = _rng(settings.seed, 4, KNOWN_GESTURE_CLASSES.index(job.name), job.index)
    place = _place(settings.seed, "gesture", int(rng.integers(settings.rooms)), size)
    return gesture_clip(job.name, actor, place, rng, size, settings.gesture_frames, settings.fps,
                        settings.antialias, with_mask)


@contextlib.contextmanager
def _one_cpu() -> Iterator[None]:
    """Pin the calling thread to one CPU so FFmpeg's MPEG-4 encoder uses one slice.

    The encoder splits frames into one slice per detected core, so without this
    the same frames give different bytes on machines with different core counts.
    """
    if not hasattr(os, "sched_getaffinity"):
        yield
        return
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(allowed)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, allowed)


def _write_one(args: tuple[SynthSettings, Path, Job]) -> Written:
    settings, out, job = args
    start = time.perf_counter()
    clip = render_job(settings, job)
    with _one_cpu():
        write_video(out / job.rel_path, clip.frames, settings.fps, codec="mpeg4",
                    bit_rate=settings.bit_rate)
    return Written(job, clip.segment, time.perf_counter() - start)


def _ucf_lists(out: Path, settings: SynthSettings, written: list[Written]) -> None:
    lists = out / UCF_LISTS
    lists.mkdir(parents=True, exist_ok=True)
    crlf = "\r\n"
    (lists / "classInd.txt").write_bytes(
        "".join(f"{i + 1} {n}{crlf}" for i, n in enumerate(settings.actions)).encode())
    train: list[str] = []
    test: list[str] = []
    for w in written:
        if w.job.task != "action":
            continue
        rel = w.job.rel_path.split("/", 1)[1]
        (test if w.job.test else train).append(rel if w.job.test else f"{rel} {w.job.label + 1}")
    (lists / "trainlist01.txt").write_bytes("".join(line + crlf for line in train).encode())
    (lists / "testlist01.txt").write_bytes("".join(line + crlf for line in test).encode())


def _nv_lists(out: Path, settings: SynthSettings, written: list[Written]) -> None:
    root = out / NV_ROOT
    root.mkdir(parents=True, exist_ok=True)
    train: list[str] = []
    test: list[str] = []
    for w in written:
        if w.job.task != "gesture":
            continue
        folder = "./" + w.job.rel_path.split("/", 1)[1].rsplit("/", 1)[0]
        a, b = w.segment
        line = (f"path:{folder} depth:sk_depth:{a}:{b} color:sk_color:{a}:{b} "
                f"duo_left:duo_left:{a}:{b} label:{w.job.label + 1} \n")
        (test if w.job.test else train).append(line)
    (root / NV_TRAIN).write_bytes("".join(train).encode())
    (root / NV_TEST).write_bytes("".join(test).encode())
    (root / NV_CLASSES).write_bytes("".join(f"{n}\n" for n in settings.gestures).encode())


def generate(settings: SynthSettings, out: str | Path, workers: int = 1) -> list[Written]:
    """Render and encode every video, write the list files and `set.yaml`, then swap in.

    Everything is written into a partial sibling folder first (see `output.py`),
    so `out` holds either the earlier set or the new one, never half of one, and
    a folder that is not provably an earlier set is refused untouched.
    """
    out = Path(os.path.abspath(out))  # "." has no name to build the sibling from; links kept
    partial = prepare(out)
    jobs = plan(settings)
    files = [job.rel_path for job in jobs] + [*LIST_FILES, SET_FILE]
    meta = asdict(settings)
    try:
        write_manifest(partial, meta, files, complete=False)  # before the first file
        written = _render(settings, partial, jobs, workers)
        _ucf_lists(partial, settings, written)
        _nv_lists(partial, settings, written)
        (partial / SET_FILE).write_text(SET_YAML, encoding="utf-8")
        write_manifest(partial, meta, files, complete=True)
        finish(partial, out)
    except Exception:
        # ours by construction; an interrupted process leaves it for the next run instead
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return written


def _render(settings: SynthSettings, out: Path, jobs: list[Job], workers: int) -> list[Written]:
    log.info("rendering %d videos (%d action, %d gesture classes) into %s with %d worker(s)",
             len(jobs), len(settings.actions), len(settings.gestures), out, workers)
    start = time.perf_counter()
    tasks = [(settings, out, job) for job in jobs]
    written: list[Written] = []
    if workers > 1:
        # spawn: a forked child would inherit the parent's threads (torch, BLAS) mid-state.
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            for w in pool.imap(_write_one, tasks, chunksize=4):
                written.append(w)
                _progress(len(written), len(jobs), start)
    else:
        for task in tasks:
            written.append(_write_one(task))
            _progress(len(written), len(jobs), start)
    per_video = 1000 * sum(w.seconds for w in written) / max(len(written), 1)
    log.info("wrote %d videos in %.1f s (%.0f ms of render+encode per video)", len(written),
             time.perf_counter() - start, per_video)
    return written


def _progress(done: int, total: int, start: float) -> None:
    if done == total or done % 50 == 0:
        log.info("%d/%d videos, %.1f s", done, total, time.perf_counter() - start)
