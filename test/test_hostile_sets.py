"""Standing bad-input suite: hostile set configs (YAML) through `load_set` and the CLI.

Generated documents mix the real keys with values of every type, `~user`
paths, NUL bytes, empty strings, repeated keys and sources. The contract: a
`SetConfig` that agrees with an independent parse of the same text (PyYAML's
own loader and composer), or one `SettingsError` line, and from the CLI exit
0 or 2 with a one-line error; never another exception, never a hang.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers_hostile import HOSTILE, one_line, untouched  # noqa: F401 (autouse fixture)
from hypothesis import given
from hypothesis import strategies as st

from mtl_perception.settings import SettingsError
from training.__main__ import main
from training.datasets.sets import load_set

pytestmark = pytest.mark.timeout(120)

KEYS = ["format", "root", "split", "annotations", "train_list", "test_list", "class_names",
        "kind", "label_base", "part", "test_root", "extensions"]
WORDS = ["~", "~/x", "~nosuchuser_mtl/x", "", " ", "a\0b", "r", "lists", "default", "none",
         "ucf101", "nvgesture", "mmaction", "folders", "isogd", "ntu", "videos", "gesture", "..",
         "/abs/data", "-1"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 4),
                    st.sampled_from([10**30, -(10**30), 1.5, math.nan, math.inf]),
                    st.sampled_from(WORDS), st.text(max_size=6))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3),
    st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=4), st.integers(0, 3)),
                    inner, max_size=3)), max_leaves=6)
GOOD_ROOTS = ["r", "data", "~/x", "/abs/data", "d/../e"]
ROOTS = st.one_of(st.sampled_from(GOOD_ROOTS), st.sampled_from(GOOD_ROOTS),
                  st.sampled_from(["~", "~nosuchuser_mtl/x", "", "a\0b", " "]), values)
OPTIONS = {  # per format: keys a user would write, with good and bad values
    "ucf101": {"annotations": st.sampled_from(["lists", "", "~nosuchuser_mtl"]),
               "split": st.one_of(st.integers(0, 4), values)},
    "mmaction": {"train_list": st.sampled_from(["t.txt", "a\0b"]),
                 "kind": st.sampled_from(["videos", "frames", "auto", "x"]),
                 "label_base": st.one_of(st.integers(-1, 2), values)},
    "ntu": {"part": st.sampled_from(["action", "gesture", "all", "none"]),
            "version": st.sampled_from(["ntu60", "ntu120", 120])},
    "isogd": {"test_split": st.sampled_from(["valid", "test", "dev"])},
    "nvgesture": {"class_names": st.sampled_from(["c.txt", ""])},
    "folders": {"extensions": st.lists(st.sampled_from([".avi", "mp4", ""]), max_size=2)},
}
plausible_source = st.one_of(*(
    st.fixed_dictionaries({"format": st.just(fmt), "root": ROOTS}, optional=options)
    for fmt, options in OPTIONS.items()))
task_names = st.one_of(st.sampled_from(["action", "gesture", "", " "]), st.integers(0, 2))
GOOD_SOURCE = plausible_source.filter(lambda d: d["root"] in GOOD_ROOTS)


@st.composite
def documents(draw: st.DrawFn) -> Any:
    """Mostly a usable set with one hostile change; sometimes anything at all."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.fixed_dictionaries({}, optional={
            "name": values, "tasks": values, "class_merge": values, "extra": values}))
    names = draw(st.lists(st.sampled_from(["action", "gesture"]), min_size=1, max_size=2,
                          unique=True))
    document: dict[Any, Any] = {"tasks": {n: draw(st.lists(plausible_source if draw(
        st.booleans()) else GOOD_SOURCE, min_size=1, max_size=3)) for n in names}}
    if draw(st.booleans()):
        document["name"] = draw(st.sampled_from(["set1", "", "x y"]))
    if draw(st.booleans()):
        document["class_merge"] = draw(st.sampled_from(
            ["default", "none", "m.yaml", "", "~nosuchuser_mtl/m"]))
    change = draw(st.integers(0, 6))
    task = names[0]
    if change == 1:  # a wrong value somewhere in a source
        source = draw(st.sampled_from(document["tasks"][task]))
        source[draw(st.sampled_from(["root", "format", *KEYS]))] = draw(values)
    elif change == 2:  # the same source twice
        document["tasks"][task].append(dict(document["tasks"][task][0]))
    elif change == 3:  # a task that is not a list of sources
        document["tasks"][draw(task_names)] = draw(values)
    elif change == 4:  # a top-level value of the wrong type
        document[draw(st.sampled_from(["name", "tasks", "class_merge"]))] = draw(values)
    return document


repeats = st.one_of(st.none(), st.none(), st.integers(0, 40))


def _text(document: Any, repeat_line: int | None) -> str:
    text = yaml.safe_dump(document, allow_unicode=False)
    if repeat_line is None:
        return text
    lines = text.splitlines(keepends=True)
    index = repeat_line % len(lines)  # a pasted line: often a duplicated key
    return "".join(lines[: index + 1] + lines[index:])


def _has_repeated_key(node: yaml.Node) -> bool:
    """An independent look at the text: any mapping with two equal scalar keys."""
    if isinstance(node, yaml.MappingNode):
        keys = [(k.tag, k.value) for k, _ in node.value if isinstance(k, yaml.ScalarNode)]
        if len(keys) != len(set(keys)):
            return True
        return any(_has_repeated_key(v) for _, v in node.value)
    if isinstance(node, yaml.SequenceNode):
        return any(_has_repeated_key(v) for v in node.value)
    return False


def _agrees(config: Any, text: str, path: Path) -> None:
    """The loaded set against PyYAML's own reading of the same text."""
    node = yaml.compose(text)
    assert node is not None and not _has_repeated_key(node), "a repeated key was accepted"
    data = yaml.safe_load(text)
    assert config.name == (data.get("name") or path.stem)
    assert list(config.tasks) == list(data["tasks"])
    for task, listed in data["tasks"].items():
        loaded = config.tasks[task]
        assert [s.format for s in loaded] == [item["format"] for item in listed]
        for source, item in zip(loaded, listed):
            root = Path(os.path.expanduser(item["root"]))
            assert source.settings.root == (root if root.is_absolute() else path.parent / root)
        assert all(a != b for i, a in enumerate(loaded) for b in loaded[i + 1:])


@HOSTILE
@given(documents(), repeats)
def test_hostile_set_configs_load_or_fail_in_one_line(document: Any, repeat: int | None) -> None:
    text = _text(document, repeat)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "set.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            config = load_set(path)
        except SettingsError as exc:
            one_line(str(exc))
        else:
            _agrees(config, text, path)
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(["summarize", "--config", str(path), "--splits", "train"])
        assert code in (0, 2)
        if code == 2:
            last = err.getvalue().rstrip("\n").split("\n")[-1]
            assert last.startswith("error: ") and "Traceback" not in err.getvalue()
        assert sorted(os.listdir(folder)) == ["set.yaml"]  # nothing written beside it


@HOSTILE
@given(st.text(max_size=60), st.sampled_from(["", "tasks:\n", "tasks: {a: [{format: x}]}\n"]))
def test_arbitrary_text_as_a_set_config(text: str, prefix: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "set.yaml"
        path.write_bytes((prefix + text).encode("utf-8", errors="surrogatepass"))
        try:
            load_set(path)
        except SettingsError as exc:
            one_line(str(exc))
