"""`label-bag` (contact sheet + template CSV) and `summarize` on bag sources."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from helpers_bag import write_image_bag
from PIL import Image

from training.__main__ import main


def test_contact_sheet_and_template(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bag = write_image_bag(tmp_path / "bag", count=40, fps=10.0)  # 0.0 .. 3.9 s, 24x32
    out = tmp_path / "labels.csv"
    assert main(["label-bag", "--bag", str(bag), "--out", str(out), "--every", "0.5",
                 "--per-row", "3", "--width", "64"]) == 0
    sheet = Image.open(tmp_path / "labels.png")
    # thumbnails at 0.0, 0.5, ..., 3.5 s: 8, in 3 rows of 3; 64x48 each + a caption line
    assert sheet.size == (3 * 64, 3 * (48 + 12))
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["start", "end", "task", "label"]
    assert rows[1:] == [["0.000000", "1.500000", "gesture", "TODO"],
                        ["1.500000", "3.000000", "gesture", "TODO"],
                        ["3.000000", "3.900000", "gesture", "TODO"]]
    assert "3 rows labelled TODO" in capsys.readouterr().out
    # an existing labels file is never replaced without --overwrite
    assert main(["label-bag", "--bag", str(bag), "--out", str(out)]) == 2


def test_summarize_reads_bag_sources(tmp_path: Path) -> None:
    write_image_bag(tmp_path / "bag", count=40, fps=10.0)
    (tmp_path / "labels.csv").write_text(
        "start,end,task,label,split\n0.0,1.0,gesture,wave,train\n1.0,3.5,gesture,stop,train\n"
        "3.5,3.9,gesture,wave,test\n")
    (tmp_path / "set.yaml").write_text(json.dumps({"class_merge": "none", "tasks": {"gesture": [
        {"format": "bag", "bag": "bag", "labels": "labels.csv", "split": "column",
         "target_fps": 10.0, "cache": "cache"}]}}))
    report = tmp_path / "summary.json"
    assert main(["summarize", "--config", str(tmp_path / "set.yaml"), "--clip-length", "8",
                 "--json", str(report)]) == 0
    train = json.loads(report.read_text())["tasks"]["gesture"]["train"]
    assert (train["samples"], train["classes"], train["missing"], train["not_files"]) == (
        2, 2, 0, 0)
    # 1 s at 10 fps = 10 frames: 3 positions of an 8-frame clip; 2.5 s: 25 - 8 + 1 = 18
    assert train["bags"] == {"intervals": {"stop": 1, "wave": 1},
                             "labelled_s": {"stop": 2.5, "wave": 1.0},
                             "clips": {"stop": 18, "wave": 3}, "clip_length": 8}
    assert not (tmp_path / "cache").exists()  # summarize decodes nothing
