"""The untrimmed part of the synthetic set: which sessions to render and how (see writer.py)."""

from __future__ import annotations

from training.synthetic.cast import actor_of, place_of, rng_of
from training.synthetic.distractors import SCENE_DISTRACTORS
from training.synthetic.real_footage import SOURCES, real_jobs, render_real
from training.synthetic.sessions import YARD_ACTIONS, Session, session_clip
from training.synthetic.settings import Job, SynthSettings

SESSIONS = "sessions"
SHOWN_SUFFIX = ".shown.csv"


def untrimmed_jobs(settings: SynthSettings) -> list[Job]:
    """Sessions and background videos; each takes an actor of its split, in turn."""
    yard = bool(set(settings.actions) & set(YARD_ACTIONS))  # in-place actions to show
    n_test_groups, first_test = settings.test_group_count(), (
        settings.n_subjects - settings.test_subject_count() + 1)
    jobs = []
    for kind, counts in (("session", (settings.train_sessions, settings.test_sessions)),
                         ("background", (settings.backgrounds, settings.backgrounds))):
        for test, count in zip((False, True), counts):
            split = "test" if test else "train"
            folder = f"{SESSIONS}/{split}" if kind == "session" else (
                f"{SESSIONS}/background/{split}")
            for i in range(count):
                framing = "yard" if yard and i % 2 else "room"
                if framing == "yard":  # UCF groups: 1..n_test are test
                    groups = (range(1, n_test_groups + 1) if test
                              else range(n_test_groups + 1, settings.n_groups + 1))
                else:
                    groups = (range(first_test, settings.n_subjects + 1) if test
                              else range(1, first_test))
                group = list(groups)[(i // 2) % len(groups)]
                rel = f"{folder}/{kind}_{i:02d}.avi"
                jobs.append(Job(kind, framing, 0, i, rel, test, group))
    return jobs + real_jobs(settings, f"{SESSIONS}/background") if settings.real_footage else jobs


def session_labels_path(job: Job) -> str:
    """The labels CSV beside a session video."""
    return job.rel_path[: -len(".avi")] + ".csv"


def shown_path(job: Job) -> str:
    """What the video shows, beside it (`mtl_perception.bag.shown`'s kinds)."""
    return job.rel_path[: -len(".avi")] + SHOWN_SUFFIX


def render_untrimmed(settings: SynthSettings, job: Job) -> Session:
    """One session, background video or real-footage take, in memory."""
    if job.task == "real":
        rng = rng_of(settings.seed, 8, int(job.test), list(SOURCES).index(job.name), job.index)
        frames = render_real(settings, job, rng)
        return Session(frames, [], whole="real")
    task = "action" if job.name == "yard" else "gesture"
    rng = rng_of(settings.seed, 7, int(job.test), int(job.task == "background"), job.index)
    size = (settings.width, settings.height)
    count = settings.places if task == "action" else settings.rooms
    place = place_of(settings.seed, task, int(rng.integers(count)), size)
    if job.task == "background":
        classes: tuple[str, ...] = ()
        seconds = settings.background_seconds
    else:
        classes = (tuple(a for a in settings.actions if a in YARD_ACTIONS) if task == "action"
                   else settings.gestures)
        seconds = settings.session_seconds
    return session_clip(job.name, actor_of(settings.seed, task, job.group), place, rng, size,
                        round(seconds * settings.fps), settings.fps, classes,
                        settings.gesture_frames, settings.frames, settings.antialias,
                        SCENE_DISTRACTORS if settings.scene_distractors else ())



def set_yaml(settings: SynthSettings, trimmed: str) -> str:
    """The set config: the trimmed tasks, plus the sessions' folders when there are any."""
    if not settings.has_untrimmed:
        return trimmed
    folders = [f"  - root: {SESSIONS}\n" if settings.train_sessions or settings.test_sessions
               else "", f"  - root: {SESSIONS}/background\n"
               if settings.backgrounds or settings.real_footage else ""]
    text = trimmed
    if folders[0]:
        text += "untrimmed:\n" + folders[0]
    if folders[1]:
        text += "background:\n" + folders[1]
    return text

