"""One task from several datasets: the union of their classes, shared classes merged.

The paper's Set-3 and Set-4 train the gesture task on NTU_GR plus IsoGD or
NVGesture and "merge the samples of the different datasets as the same class"
where a gesture exists in both (e.g. thumb up). Which classes are the same is
a judgement, so it lives in an editable mapping file
(`config/classes/gesture_merge.yaml`): each group names the merged class and,
per dataset format, the class it takes. Classes with identical names in two
sources are one class without any mapping (a class name is what a user sees
in results, so two classes may not share one).

Class order: sources in config order, each source's classes in its own
order, a merged class at the place of its first member. This depends only on
class lists, never on samples, so train and test always get the same ids.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

from mtl_perception.settings import SettingsError, from_dict, load_yaml
from training.datasets.listfile import DatasetError
from training.datasets.sample import UNLABELLED, LabelledSplit, VideoSample

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
DEFAULT_MERGE_FILE = CONFIG_DIR / "classes" / "gesture_merge.yaml"


@dataclass
class MergeGroup:
    """One merged class: its name and, per source format, the class it takes."""

    name: str
    members: dict[str, str] = field(default_factory=dict)  # format -> class name


@dataclass
class MergeFile:
    """The mapping file's content."""

    merges: list[MergeGroup] = field(default_factory=list)


def load_merges(path: Path) -> list[MergeGroup]:
    """Read a mapping file, rejecting a class claimed by two groups."""
    try:
        groups = from_dict(MergeFile, load_yaml(path), str(path)).merges
    except SettingsError as exc:
        raise DatasetError(str(exc)) from exc
    seen: dict[tuple[str, str], str] = {}
    names = [group.name for group in groups]
    for name in names:
        if names.count(name) > 1:  # two groups would silently become one class
            raise DatasetError(f"{path}: merge name {name!r} is used by two groups")
    for group in groups:
        if len(group.members) < 2:
            raise DatasetError(f"{path}: merge {group.name!r} needs members of two formats")
        for fmt, name in group.members.items():
            if (fmt, name) in seen:
                raise DatasetError(
                    f"{path}: {fmt} class {name!r} is in merges {seen[fmt, name]!r} "
                    f"and {group.name!r}"
                )
            seen[fmt, name] = group.name
    return groups


def merged_names(
    parts: list[tuple[str, list[str]]], groups: list[MergeGroup], task: str = ""
) -> tuple[list[str], list[list[int]], dict[str, list[str]]]:
    """Union class list, per part old->new label tables, and each class's origins.

    `parts` holds (format, class names) per source. Origins name every
    (format: class) that went into a class, for reports and checkpoints.
    """
    present = {(fmt, name) for fmt, part_names in parts for name in part_names}
    # a group applies only where two of its classes exist, so it never just renames one
    active = [g for g in groups if sum(m in present for m in g.members.items()) >= 2]
    member_of = {(fmt, name): g.name for g in active for fmt, name in g.members.items()}
    names: list[str] = []
    index: dict[str, int] = {}
    origins: dict[str, list[str]] = {}
    tables: list[list[int]] = []
    for fmt, part_names in parts:
        table = []
        for name in part_names:
            key = member_of.get((fmt, name), name)
            if key not in index:
                index[key] = len(names)
                names.append(key)
                origins[key] = []
            origins[key].append(f"{fmt}: {name}")
            table.append(index[key])
        if len(set(table)) != len(table):
            raise DatasetError(f"{task or 'task'}: a merge maps two {fmt} classes onto one")
        tables.append(table)
    _log_groups(parts, groups, origins, task)
    return names, tables, origins


def merge_splits(
    parts: list[tuple[str, LabelledSplit]], groups: list[MergeGroup], task: str = ""
) -> LabelledSplit:
    """One split holding every part's samples, relabelled into the union class list."""
    if len(parts) == 1:
        return parts[0][1]
    names, tables, origins = merged_names(
        [(fmt, split.class_names) for fmt, split in parts], groups, task
    )
    samples: list[VideoSample] = []
    for (_, split), table in zip(parts, tables, strict=True):
        for s in split.samples:
            label = UNLABELLED if s.label == UNLABELLED else table[s.label]
            samples.append(dataclasses.replace(s, label=label))
    shared = {name: items for name, items in origins.items() if len(items) > 1}
    return LabelledSplit(
        samples=samples,
        class_names=names,
        source=" + ".join(split.source for _, split in parts),
        extra={"merged_classes": shared, "parts": [split.source for _, split in parts]},
    )


def _log_groups(
    parts: list[tuple[str, list[str]]],
    groups: list[MergeGroup],
    origins: dict[str, list[str]],
    task: str,
) -> None:
    """Say which merges took effect and why a group did not (a name not found)."""
    present = {fmt: set(names) for fmt, names in parts}
    for group in groups:
        relevant = {f: n for f, n in group.members.items() if f in present}
        if len(relevant) < 2:
            continue  # the group is about datasets this task does not use
        absent = [f"{f} has no class {n!r}" for f, n in relevant.items() if n not in present[f]]
        if absent:
            log.info("%s: merge %r not applied: %s", task, group.name, "; ".join(absent))
    for name, items in origins.items():
        if len(items) > 1:
            log.info("%s: class %r merges %s", task, name, ", ".join(items))
