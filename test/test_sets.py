"""Set configs: the synthetic generator's form, path resolution, class merging, shipped sets."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from helpers_datasets import copy_lists, ntu_name, touch_all, write_yaml

from mtl_perception.settings import SettingsError
from training.datasets.class_merge import MergeGroup, merge_splits
from training.datasets.listfile import DatasetError
from training.datasets.sample import UNLABELLED, LabelledSplit, VideoSample
from training.datasets.sets import build_split, build_task_split, load_set

CONFIG = Path(__file__).resolve().parents[1] / "config"
NV_LISTS = ("nvgesture_train_correct_cvpr2016_v2.lst", "nvgesture_test_correct_cvpr2016_v2.lst")
UCF_LISTS = ("classInd.txt", "trainlist01.txt", "testlist01.txt")

SYNTHETIC = """\
name: synthetic
tasks:
  action:
    - format: ucf101
      root: UCF-101                 # video root: <root>/<Class>/v_<Class>_gGG_cCC.avi
      annotations: ucfTrainTestlist # folder with classInd.txt, trainlist01.txt, testlist01.txt
      split: 1
  gesture:
    - format: nvgesture
      root: nvGesture               # the folder the .lst `path:./Video_data/...` entries are relative to
      train_list: nvgesture_train_correct_cvpr2016_v2.lst
      test_list: nvgesture_test_correct_cvpr2016_v2.lst
      class_names: classes.txt      # optional: one name per line in label order; default class_01..class_25
"""  # noqa: E501 (the generator's form, verbatim)


@pytest.mark.parametrize("lists_inside_root", [False, True])
def test_synthetic_generator_form(splits_dir: Path, tmp_path: Path,
                                  lists_inside_root: bool) -> None:
    copy_lists(splits_dir / "ucf101", tmp_path / "ucfTrainTestlist", UCF_LISTS)
    lists_dir = tmp_path / "nvGesture" if lists_inside_root else tmp_path
    copy_lists(splits_dir / "nvgesture", lists_dir, NV_LISTS)
    (lists_dir / "classes.txt").write_text("\n".join(f"g{i}" for i in range(25)) + "\n")
    (tmp_path / "set.yaml").write_text(SYNTHETIC)
    config = load_set(tmp_path / "set.yaml")
    assert config.name == "synthetic" and list(config.tasks) == ["action", "gesture"]
    nv = config.tasks["gesture"][0].settings
    assert nv.train_list == lists_dir / NV_LISTS[0] and nv.root == tmp_path / "nvGesture"
    for split, (n_action, n_gesture) in {"train": (9537, 1050), "test": (3783, 482)}.items():
        built = build_split(config, split)
        assert len(built["action"].samples) == n_action
        assert len(built["gesture"].samples) == n_gesture
        assert built["gesture"].class_names[0] == "g0"
        assert built["action"].samples[0].path.is_relative_to(tmp_path / "UCF-101")


def fake_ntu(root: Path) -> None:
    """Thumb up (A069), ok sign (A071), clapping (A010), drink water (A001): train + test."""
    touch_all(root / ntu_name(1, 1, subject, 1, a) for subject in (1, 3) for a in (1, 10, 69, 71))


def merge_set(tmp_path: Path, splits_dir: Path, class_names: list[str] | None,
              class_merge: str | None = None) -> Path:
    fake_ntu(tmp_path / "ntu")
    nv: dict = {"format": "nvgesture", "root": "nv",
                "train_list": str(splits_dir / "nvgesture" / NV_LISTS[0]),
                "test_list": str(splits_dir / "nvgesture" / NV_LISTS[1])}
    if class_names:
        (tmp_path / "nv_classes.txt").write_text("\n".join(class_names) + "\n")
        nv["class_names"] = "nv_classes.txt"
    data: dict = {"name": "merge", "tasks": {
        "action": [{"format": "ntu", "root": "ntu", "part": "action"}],
        "gesture": [{"format": "ntu", "root": "ntu", "part": "gesture"}, nv]}}
    if class_merge:
        data["class_merge"] = class_merge
    return write_yaml(tmp_path / "merge.yaml", data)


NV_NAMED = [f"nv {i}" for i in range(1, 24)] + ["thumb up", "okay"]


def test_shared_gesture_classes_become_one(tmp_path: Path, splits_dir: Path) -> None:
    """The shipped mapping merges NTU thumb up / ok sign with NVGesture's named classes."""
    config = load_set(merge_set(tmp_path, splits_dir, NV_NAMED))
    assert config.class_merge == CONFIG / "classes" / "gesture_merge.yaml"
    train, test = (build_split(config, s)["gesture"] for s in ("train", "test"))
    assert train.class_names == test.class_names
    assert len(train.class_names) == 25 + 25 - 2
    thumb = train.class_names.index("thumb up")
    ok = train.class_names.index("ok sign")
    assert "okay" not in train.class_names and "make ok sign" not in train.class_names
    by_source: dict[int, set[str]] = {}
    for s in train.samples:
        by_source.setdefault(s.label, set()).add("ntu" if "_rgb" in s.path.name else "nv")
    assert by_source[thumb] == {"ntu", "nv"} and by_source[ok] == {"ntu", "nv"}
    nv_thumb = [s for s in train.samples if "_rgb" not in s.path.name and s.label == thumb]
    assert nv_thumb and all(s.start > 0 for s in nv_thumb)  # NVGesture label 24, segment kept
    assert train.extra["merged_classes"]["thumb up"] == ["ntu: thumb up", "nvgesture: thumb up"]
    assert len(build_split(config, "train")["action"].class_names) == 95


def test_merge_by_number_same_name_and_none(tmp_path: Path, splits_dir: Path) -> None:
    mapping = tmp_path / "mine.yaml"
    mapping.write_text("merges:\n  - name: thumbs up\n    members: {ntu: thumb up, "
                       "nvgesture: class_24}\n")
    by_number = build_task_split(load_set(merge_set(tmp_path, splits_dir, None, "mine.yaml")),
                                 "gesture", "train")
    assert len(by_number.class_names) == 49 and "class_24" not in by_number.class_names
    # no mapping: identical names still merge, others stay apart
    plain = build_task_split(load_set(merge_set(tmp_path, splits_dir, NV_NAMED, "none")),
                             "gesture", "test")
    assert len(plain.class_names) == 49 and {"okay", "make ok sign"} <= set(plain.class_names)
    # default names (class_NN): the shipped mapping has nothing to merge, nothing renamed
    default = build_task_split(load_set(merge_set(tmp_path, splits_dir, None)), "gesture", "test")
    assert len(default.class_names) == 50 and "make ok sign" in default.class_names


def test_merge_splits_relabels_and_keeps_unlabelled() -> None:
    a = LabelledSplit([VideoSample(Path("a0"), 0), VideoSample(Path("a1"), 1)], ["x", "y"], "A")
    b = LabelledSplit([VideoSample(Path("b0"), 0), VideoSample(Path("b1"), 1, 5, 9),
                       VideoSample(Path("b2"), UNLABELLED)], ["z", "why"], "B")
    merged = merge_splits([("fa", a), ("fb", b)], [MergeGroup("y", {"fa": "y", "fb": "why"})])
    assert merged.class_names == ["x", "y", "z"]
    assert [s.label for s in merged.samples] == [0, 1, 2, 1, UNLABELLED]
    assert (merged.samples[3].start, merged.samples[3].end) == (5, 9)
    with pytest.raises(DatasetError, match="two fa classes onto one"):
        merge_splits([("fa", a), ("fb", b)], [MergeGroup("m", {"fa": "x", "fb": "z"}),
                                              MergeGroup("m", {"fa": "y", "fb": "why"})])


EXPECTED = {  # DATASETS.md "Multi-task sets"
    "set1": {"action": [("ucf101", None)], "gesture": [("isogd", None)]},
    "set2": {"action": [("ucf101", None)], "gesture": [("nvgesture", None)]},
    "set3": {"action": [("ntu", "action")], "gesture": [("ntu", "gesture"), ("isogd", None)]},
    "set4": {"action": [("ntu", "action")], "gesture": [("ntu", "gesture"), ("nvgesture", None)]},
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shipped_sets_match_the_paper(name: str) -> None:
    config = load_set(CONFIG / "sets" / f"{name}.yaml")
    shape = {task: [(s.format, getattr(s.settings, "part", None)) for s in sources]
             for task, sources in config.tasks.items()}
    assert shape == EXPECTED[name]
    for sources in config.tasks.values():
        for s in sources:
            assert s.settings.root.is_absolute()
            if s.format == "ucf101":
                assert s.settings.split == 1
            if s.format == "isogd":
                assert s.settings.test_split == "valid"
            if s.format == "ntu":
                assert s.settings.gesture_classes == (
                    CONFIG / "sets" / "../classes/ntu_gesture_classes.yaml")


def test_shipped_set4_with_local_roots(tmp_path: Path, splits_dir: Path) -> None:
    data = yaml.safe_load((CONFIG / "sets" / "set4.yaml").read_text())
    fake_ntu(tmp_path / "ntu")
    for sources in data["tasks"].values():
        for s in sources:
            s["root"] = str(tmp_path / s["format"])
            for key in ("gesture_classes",):
                if key in s:
                    s[key] = str(CONFIG / "classes" / "ntu_gesture_classes.yaml")
            if s["format"] == "nvgesture":
                s["train_list"], s["test_list"] = NV_LISTS
    data["class_merge"] = str(CONFIG / "classes" / "gesture_merge.yaml")
    copy_lists(splits_dir / "nvgesture", tmp_path / "nvgesture", NV_LISTS)
    built = build_split(load_set(write_yaml(tmp_path / "set4.yaml", data)), "test")
    assert len(built["action"].class_names) == 95
    assert len(built["gesture"].class_names) == 50  # NVGesture classes unnamed: no merge
    assert len(built["gesture"].samples) == 3 + 482  # subject 3 is a test subject


@pytest.mark.parametrize(("patch", "message"), [
    ({"format": "kinetics"}, "'kinetics' is not one of"),
    ({"format": "ucf101", "root": None}, r"missing required key\(s\) \['root'\]"),
    ({"format": "ucf101", "rot": "x"}, r"unknown key\(s\) \['rot'\]"),
    ({"format": "ucf101", "split": 4}, "split must be 1, 2 or 3"),
    ({"format": "isogd", "test_split": "dev"}, "is not one of"),
])
def test_config_errors_name_the_key(tmp_path: Path, patch: dict, message: str) -> None:
    source = {"root": "r", **patch}
    source = {k: v for k, v in source.items() if v is not None}
    path = write_yaml(tmp_path / "bad.yaml", {"tasks": {"action": [source]}})
    with pytest.raises(SettingsError, match=message) as info:
        load_set(path)
    assert "tasks.action[0]" in str(info.value)


def test_missing_config_and_bad_split(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="not found"):
        load_set(tmp_path / "nope.yaml")
    shutil.copy(CONFIG / "sets" / "set1.yaml", tmp_path / "s.yaml")
    with pytest.raises(DatasetError, match="split must be one of"):
        build_split(load_set(tmp_path / "s.yaml"), "valid")


def test_config_files_that_are_not_utf8(tmp_path: Path) -> None:
    """A set, class-list or mapping file saved in Latin-1: one error naming it, no traceback."""
    latin1 = "name: caf\xe9\ntasks: {}\n".encode("latin-1")
    (tmp_path / "set.yaml").write_bytes(latin1)
    with pytest.raises(SettingsError, match=r"set\.yaml: not a UTF-8"):
        load_set(tmp_path / "set.yaml")
    (tmp_path / "gestures.yaml").write_bytes(b"gesture_classes: [A069]  # caf\xe9\n")
    fake_ntu(tmp_path / "ntu")
    config = load_set(write_yaml(tmp_path / "ntu.yaml", {"tasks": {"gesture": [
        {"format": "ntu", "root": "ntu", "part": "gesture", "gesture_classes": "gestures.yaml"}]}}))
    with pytest.raises(DatasetError, match=r"gestures\.yaml: not a UTF-8"):
        build_split(config, "train")
