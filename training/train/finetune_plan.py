"""What a fine-tuned model's tasks and classes are: the `init:` checkpoint's, unless told otherwise.

Fine-tuning loses nothing silently:

- every task and class of the checkpoint is kept, in the checkpoint's order;
  classes the new set has no samples of keep their old head rows;
- `drop: [action, gesture/wave]` removes a task or a class (its samples are
  left out); a `drop:` entry that names nothing is refused (a typo);
- a class in the set that the checkpoint lacks is refused in one line unless
  `new_classes:` lists it (`gesture/zigzag`, or `pointing/*` for every class
  of a new task), so `swipe-left` for `swipe_left` is caught, not learned;
- a checkpoint task the set does not feed is fed by `replay:` (the
  checkpoint's training set, or a sample of it: `replay_per_class`); without
  it the task is still kept, with its old weights, but not trained ("kept
  (not trained: no samples in the set)"; `finetune_keep.py` holds its own
  weights fixed; what it shares with the trained tasks still changes).

`replay: init` reads the set named in the checkpoint's own provenance. The
plan's `lines()` are logged: per task, kept, extended, new and dropped.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path

from mtl_perception.checkpoint import CheckpointInfo
from training.datasets.sample import UNLABELLED, LabelledSplit
from training.train.finetune import InitError


@dataclass(frozen=True)
class TaskPlan:
    task: str
    classes: tuple[str, ...]
    kept: tuple[str, ...]  # the checkpoint's classes kept, in its order
    new: tuple[str, ...]
    dropped: tuple[str, ...]
    status: str  # kept | extended | new
    fed: bool = True  # False: the set and replay have no samples of it (kept, not trained)

    def line(self, sources: str) -> str:
        if not self.fed:
            return (f"init: task {self.task} kept (not trained: no samples in the set): "
                    f"classes {len(self.kept)} kept"
                    + (f"; {len(self.dropped)} dropped ({', '.join(self.dropped)})"
                       if self.dropped else ""))
        parts = [f"{len(self.kept)} kept"]
        if self.new:
            parts.append(f"{len(self.new)} new ({', '.join(self.new)})")
        if self.dropped:
            parts.append(f"{len(self.dropped)} dropped ({', '.join(self.dropped)})")
        return (f"init: task {self.task} {self.status}: classes {'; '.join(parts)}; "
                f"samples: {sources}")


@dataclass(frozen=True)
class Plan:
    tasks: tuple[TaskPlan, ...]
    dropped_tasks: tuple[str, ...]

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(t.task for t in self.tasks)

    @property
    def class_names(self) -> tuple[tuple[str, ...], ...]:
        return tuple(t.classes for t in self.tasks)

    @property
    def unfed(self) -> tuple[str, ...]:
        """The checkpoint's tasks kept with their old weights, not trained."""
        return tuple(t.task for t in self.tasks if not t.fed)


def _split_entry(entry: str) -> tuple[str, str | None]:
    task, _, name = entry.partition("/")
    return task.strip(), (name.strip() if name else None)


@dataclass(frozen=True)
class Origin:
    """What the plan needs of the `init:` checkpoint: its tasks' classes and its set."""

    classes: dict[str, tuple[str, ...]]
    set: str  # the set it was trained on ("" if not recorded): `replay: init`

    @classmethod
    def from_info(cls, info: CheckpointInfo) -> Origin:
        config = info.provenance.get("config")
        return cls(dict(zip(info.model.task_names, (tuple(c) for c in info.class_names),
                            strict=True)),
                   str(config.get("set", "")) if isinstance(config, dict) else "")

    @classmethod
    def from_record(cls, record: dict[str, object]) -> Origin:
        """From the provenance `init` record (finetune.py) a run stored at its start."""
        tasks, names = record.get("tasks"), record.get("class_names")
        origin = record.get("origin")
        if not isinstance(tasks, list) or not isinstance(names, list):
            raise InitError("init: the run's record of its init checkpoint has no tasks and "
                            "classes; start the fine-tuning again")
        return cls(dict(zip(tasks, (tuple(n) for n in names), strict=True)),
                   str(origin.get("set", "")) if isinstance(origin, dict) else "")


def plan_classes(theirs: dict[str, tuple[str, ...]], init: Path,
                 set_classes: dict[str, list[str]], drop: tuple[str, ...],
                 new_classes: tuple[str, ...], replay_tasks: set[str]) -> Plan:
    """The run's tasks and classes: `theirs`, the checkpoint's tasks and classes;
    `set_classes`, the set's tasks (those trained) and classes."""
    drops = [_split_entry(e) for e in drop]
    for entry, (task, name) in zip(drop, drops, strict=True):
        known = set(theirs.get(task, ())) | set(set_classes.get(task, ()))
        unknown_task = task not in theirs and task not in set_classes
        if unknown_task or (name is not None and name not in known):
            raise InitError(f"drop: {entry!r} names no task or class of {init} or the set "
                            f"(tasks {sorted({*theirs, *set_classes})}); a typo?")
    dropped_tasks = {t for t, n in drops if n is None}
    dropped_classes = {(t, n) for t, n in drops if n is not None}
    wanted = [_split_entry(e) for e in new_classes]
    used: set[int] = set()

    def allowed(task: str, name: str) -> bool:
        for i, (t, n) in enumerate(wanted):
            if (n is None and t == name) or (t == task and n in (name, "*")):
                used.add(i)
                return True
        return False

    plans: list[TaskPlan] = []
    for task in [*theirs, *(t for t in set_classes if t not in theirs)]:
        if task in dropped_tasks:
            continue
        old = theirs.get(task, ())
        given = set_classes.get(task, [])
        lacking = [n for n in given if n not in old and (task, n) not in dropped_classes
                   and not allowed(task, n)]
        if lacking:
            what = f"{init} lacks" if old else f"{init} has no task {task!r}, so"
            raise InitError(
                f"init: the set's {task} class(es) {lacking} are not in the checkpoint ({what}"
                f" them; it has {list(old)}); a typo? else list them in new_classes: "
                f"[{task}/{lacking[0]}]" + (f" or [{task}/*]" if not old else ""))
        kept = tuple(n for n in old if (task, n) not in dropped_classes)
        new = tuple(n for n in given if n not in old and (task, n) not in dropped_classes)
        gone = tuple(n for n in old if (task, n) in dropped_classes)
        status = "new" if not old else ("kept" if not new and not gone else "extended")
        fed = task in set_classes or task in replay_tasks
        plans.append(TaskPlan(task, kept + new, kept, new, gone, status, fed))
    if plans and all(not p.fed for p in plans):
        raise InitError(f"init: the set feeds none of the run's tasks {[p.task for p in plans]}"
                        " (all it has is dropped): nothing to train")
    unused = [new_classes[i] for i in range(len(wanted)) if i not in used]
    if unused:
        raise InitError(f"new_classes: {unused} name no class of the set that {init} lacks "
                        "(a typo, or a class the checkpoint already has)")
    return Plan(tuple(plans), tuple(sorted(dropped_tasks & set(theirs))))


def remap(split: LabelledSplit, classes: tuple[str, ...], source: str = "") -> LabelledSplit:
    """`split`'s samples relabelled into `classes` by name; dropped classes' samples left out."""
    index = {name: i for i, name in enumerate(classes)}
    samples = []
    for sample in split.samples:
        name = split.class_names[sample.label] if sample.label != UNLABELLED else None
        if name is None or name in index:
            label = UNLABELLED if name is None else index[name]
            samples.append(dataclasses.replace(sample, label=label))
    return LabelledSplit(samples, list(classes), source or split.source, dict(split.extra))


def sample_per_class(split: LabelledSplit, per_class: int, seed: int) -> LabelledSplit:
    """At most `per_class` samples of each class (a seeded choice; 0: all)."""
    if per_class <= 0:
        return split
    rng = random.Random(seed)
    by_class: dict[int, list[int]] = {}
    for i, sample in enumerate(split.samples):
        by_class.setdefault(sample.label, []).append(i)
    chosen = sorted(i for idx in by_class.values()
                    for i in (idx if len(idx) <= per_class else rng.sample(idx, per_class)))
    return dataclasses.replace(split, samples=[split.samples[i] for i in chosen])


def merge(parts: list[LabelledSplit], classes: tuple[str, ...]) -> LabelledSplit:
    """Splits already in `classes` joined into one."""
    return LabelledSplit([s for p in parts for s in p.samples], list(classes),
                         " + ".join(p.source for p in parts if p.source))
