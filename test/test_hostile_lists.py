"""Standing bad-input suite: hostile list files against an independent parse.

The references below implement the documented line formats from scratch
(newlines LF/CRLF/CR, a leading BOM, blank lines skipped, identical repeats
counted once, integers as ASCII digits within label range); the readers must
agree with them, or refuse with one `DatasetError` line exactly when the
reference refuses.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest
from helpers_hostile import HOSTILE, one_line, untouched  # noqa: F401 (autouse fixture)
from hypothesis import given
from hypothesis import strategies as st

from training.datasets import mmaction, ucf101
from training.datasets.listfile import MAX_CLASSES, DatasetError
from training.datasets.sample import LabelledSplit, VideoSample
from training.tools.summarize import summarize_split

pytestmark = pytest.mark.timeout(120)

CLASSES = ["Walk", "Jump", "Sit"]
BAD = object()  # the reference refuses the file
INTEGER = re.compile(r"[+-]?[0-9]+")

paths = st.one_of(
    st.sampled_from(["Walk/v_a.avi", "Jump/v_b.avi", "Sit/c.avi", "Walk//v_a.avi", "walk/v_a.avi",
                     "Nope/x.avi", "Walk", "Walk\\v_c.avi", "/Walk/x.avi", "Sit/../Walk/d.avi",
                     "Jump/é ü.avi", "a.avi", "b.mp4", "Walk/a\0b.avi", "Sit/x\0/y.avi"]),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=10),
)
labels = st.one_of(st.integers(-3, 5).map(str), st.sampled_from(
    ["", "1_0", "²", "+2", "x", "1.0", "٣", "0x1", " ", str(MAX_CLASSES - 1), str(MAX_CLASSES),
     str(-MAX_CLASSES - 1), "9" * 30, "0" * 40 + "1"]))
separators = st.sampled_from([" ", "\t", "  ", "\u3000", "\x0c", " \x85"])
lines = st.builds(lambda p, s, lab: f"{p}{s}{lab}", paths, separators, labels)
files = st.builds(
    lambda chosen, newline, bom, tail: ("\ufeff" if bom else "") + newline.join(chosen) + tail,
    st.lists(st.one_of(lines, st.sampled_from(["", "   ", "Walk/v_a.avi 1"])), max_size=8),
    st.sampled_from(["\n", "\r\n", "\r"]), st.booleans(), st.sampled_from(["", "\n", "\r\n  "]),
)


def _lines(text: str) -> list[str]:
    return [line.strip() for line in re.split(r"\r\n|\r|\n", text.removeprefix("\ufeff"))]


def reference_ucf(text: str, root: Path) -> object:
    """UCF-101 trainlist: `Class/video [label]`; the class is the folder (label ignored)."""
    out: list[tuple[Path, int]] = []
    for line in _lines(text):
        if not line:
            continue
        fields = line.split()
        if len(fields) not in (1, 2):
            return BAD
        relative = fields[0].replace("\\", "/")
        folder = relative.split("/")[0]
        if "/" not in relative or folder not in CLASSES:
            return BAD
        if len(fields) == 2 and not (INTEGER.fullmatch(fields[1])
                                     and abs(int(fields[1])) <= MAX_CLASSES):
            return BAD  # the column is only compared, but a number no label has is damage
        sample = (root / relative, CLASSES.index(folder))
        if sample not in out:
            out.append(sample)
    return out or BAD


def reference_mmaction(text: str, root: Path) -> object:
    """mmaction video list: `path label`, 0-based; one path may not carry two labels."""
    out: dict[Path, int] = {}
    for line in _lines(text):
        if not line:
            continue
        fields = line.split()
        if (len(fields) != 2 or not INTEGER.fullmatch(fields[1])
                or not 0 <= int(fields[1]) < MAX_CLASSES):
            return BAD
        path, label = root / fields[0], int(fields[1])
        if out.setdefault(path, label) != label:
            return BAD
    return list(out.items()) or BAD


def _check(read, reference, text: str, raw: bytes | None = None) -> None:
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        (base / "list.txt").write_bytes(raw if raw is not None else text.encode("utf-8"))
        expected = BAD if raw is not None and _undecodable(raw) else reference(text, base / "r")
        try:
            got = read(base)
        except DatasetError as exc:
            one_line(str(exc))
            assert expected is BAD, f"refused a list the reference reads: {exc}"
            return
        assert expected is not BAD, f"read a list the reference refuses: {got}"
        assert got == expected
        # what was read goes through the file checks (stat only: nothing exists here)
        split = LabelledSplit([VideoSample(p, label) for p, label in got], CLASSES, "hostile")
        row = summarize_split(split, check=True, show=3)
        assert row["missing"] == len({p for p, _ in got}) and row["unreadable"] == 0


def _undecodable(raw: bytes) -> bool:
    try:
        raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return True
    return False


def _read_ucf(base: Path) -> list[tuple[Path, int]]:
    lists = base / "lists"
    lists.mkdir()
    (lists / "classInd.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(CLASSES)))
    (base / "list.txt").rename(lists / "trainlist01.txt")
    split = ucf101.read_split(ucf101.Ucf101Source(root=base / "r", annotations=lists), "train")
    return [(s.path, s.label) for s in split.samples]


def _read_mmaction(base: Path) -> list[tuple[Path, int]]:
    source = mmaction.MmactionSource(root=base / "r", kind="videos")
    return [(s.path, s.label) for s in mmaction.read_list(base / "list.txt", source)]


@HOSTILE
@given(files)
def test_ucf101_lists_match_the_reference(text: str) -> None:
    _check(_read_ucf, reference_ucf, text)


@HOSTILE
@given(files)
def test_mmaction_lists_match_the_reference(text: str) -> None:
    _check(_read_mmaction, reference_mmaction, text)


@HOSTILE
@given(st.binary(max_size=40), st.sampled_from([b"", b"\xef\xbb\xbf", b"Walk/v_a.avi 1\n"]))
def test_arbitrary_bytes_are_read_or_refused_in_one_line(raw: bytes, prefix: bytes) -> None:
    data = prefix + raw
    text = data.decode("utf-8-sig", errors="replace")
    _check(_read_ucf, reference_ucf, text, raw=data)


@HOSTILE
@given(st.lists(st.one_of(st.sampled_from([*CLASSES, "Walk", ""]), st.text(max_size=6)),
                max_size=5), st.booleans())
def test_class_index_files_refuse_repeats_and_gaps(names: list[str], numbered: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "classInd.txt"
        text = "".join(f"{i + 1} {n}\n" if numbered else f"{n}\n" for i, n in enumerate(names))
        path.write_text(text, encoding="utf-8")
        rows = [line.split() for line in _lines(text) if line]
        valid = (bool(rows) and all(len(r) == 2 for r in rows)
                 and [r[0] for r in rows] == [str(i + 1) for i in range(len(rows))]
                 and len({r[1] for r in rows}) == len(rows))
        try:
            got = ucf101.read_class_index(path)
        except DatasetError as exc:
            one_line(str(exc))
            assert not valid, exc
            return
        assert valid and got == [r[1] for r in rows]
