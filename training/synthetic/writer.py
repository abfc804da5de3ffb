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
import json
import logging
import multiprocessing
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from training.datasets.video import write_video
from training.synthetic.motions import ACTION_CLASSES, GESTURE_CLASSES
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
# everything `generate` writes at the top of `--out` (what a rerun may remove)
SET_FILE = "set.yaml"  # the set config the project's loader reads
META_FILE = "synth.json"  # the settings that made the set; marks a folder as ours
OUTPUT_NAMES = (UCF_ROOT, UCF_LISTS, NV_ROOT, SET_FILE, META_FILE)


class SynthOutputError(ValueError):
    """An `--out` folder the generator must not write into."""

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
        if self.width % 2 or self.height % 2 or self.width < 32 or self.height < 24:
            raise ValueError(f"size {self.width}x{self.height}: need even sides, at least 32x24")
        if self.frames < 8 or self.gesture_frames < 16:
            raise ValueError("need at least 8 action frames and 16 gesture frames")
        for name in self.actions:
            if name not in ACTION_CLASSES:
                raise ValueError(f"unknown action {name!r}; known: {list(ACTION_CLASSES)}")
        for name in self.gestures:
            if name not in GESTURE_CLASSES:
                raise ValueError(f"unknown gesture {name!r}; known: {list(GESTURE_CLASSES)}")
        if min(self.clips_per_group, self.reps_per_subject, self.places, self.rooms) < 1:
            raise ValueError("clips_per_group, reps_per_subject, places, rooms must be positive")
        if not self.actions or not self.gestures or self.fps <= 0 or self.bit_rate <= 0:
            raise ValueError("need at least one action and one gesture class, fps and bit_rate > 0")
        if min(self.actions_per_class, self.gestures_per_class) < 1:
            raise ValueError("actions_per_class and gestures_per_class must be positive")
        if min(self.test_groups, self.test_subjects) < 0:
            raise ValueError("test_groups and test_subjects must be >= 0")
        # An empty train or test list is a set nobody can use, and the readers refuse it.
        if self.test_group_count() >= self.n_groups:
            raise ValueError(
                f"{self.actions_per_class} action(s) per class at {self.clips_per_group} per "
                f"group make {self.n_groups} group(s), {self.test_group_count()} of them test: "
                "the train list would be empty (raise actions_per_class)")
        if self.test_subject_count() >= self.n_subjects:
            raise ValueError(
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
    rng = _rng(settings.seed, 4, GESTURE_CLASSES.index(job.name), job.index)
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


def prepare_output(out: Path) -> None:
    """Make `out` an empty folder, or clear the previous synthetic set it holds.

    A folder with other content is refused: the set's names (`UCF-101/`,
    `ucfTrainTestlist/`...) are those of the real datasets, so writing into a
    user's data folder would overwrite their lists. A previous synthetic set
    (it has `synth.json`) is removed entry by entry, so no video of a larger
    earlier run stays behind to break "same seed, same files".
    """
    if out.exists() and not out.is_dir():
        raise SynthOutputError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not (out / META_FILE).is_file():
            raise SynthOutputError(
                f"--out {out} is not empty and holds no earlier synthetic set (no synth.json); "
                "choose a new or empty folder")
        log.info("replacing the synthetic set in %s", out)
        for name in OUTPUT_NAMES:
            entry = out / name
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            elif entry.exists() or entry.is_symlink():
                entry.unlink()
    out.mkdir(parents=True, exist_ok=True)


def generate(settings: SynthSettings, out: str | Path, workers: int = 1) -> list[Written]:
    """Render and encode every video, then write the list files and `set.yaml`."""
    out = Path(out)
    prepare_output(out)
    jobs = plan(settings)
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
    _ucf_lists(out, settings, written)
    _nv_lists(out, settings, written)
    (out / SET_FILE).write_text(SET_YAML, encoding="utf-8")
    meta = {"generator": "training.synthetic", "settings": asdict(settings)}
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    per_video = 1000 * sum(w.seconds for w in written) / max(len(written), 1)
    log.info("wrote %d videos in %.1f s (%.0f ms of render+encode per video)", len(written),
             time.perf_counter() - start, per_video)
    return written


def _progress(done: int, total: int, start: float) -> None:
    if done == total or done % 50 == 0:
        log.info("%d/%d videos, %.1f s", done, total, time.perf_counter() - start)
