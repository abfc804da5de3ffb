"""to-bag / dataset_to_bag replays video sources. A bag source (`format: bag`) is a bag
already: `--format bag` is no choice of its --help (it had been offered, and found no
sample), and a set whose chosen tasks list one is refused in one line naming it (each of
its samples had been skipped as "a directory, not a regular file")."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers_bag import write_image_bag

from training.tools.to_bag import main


def _bag_set(tmp_path: Path) -> Path:
    write_image_bag(tmp_path / "rec", count=20, fps=10.0)
    (tmp_path / "rec.csv").write_text(
        "start,end,task,label\n0.0,0.9,action,walk\n1.0,1.9,action,jump\n", encoding="utf-8")
    path = tmp_path / "set.yaml"
    path.write_text("name: recorded\ntasks:\n  action:\n"
                    "    - {format: bag, bag: rec, labels: rec.csv, split: test}\n",
                    encoding="utf-8")
    return path


def test_format_bag_is_not_offered(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--format", "bag", "--source", "bag=rec", "labels=rec.csv", "--out", "x"])
    assert stop.value.code == 2
    assert "invalid choice: 'bag'" in capsys.readouterr().err


def test_set_with_a_bag_source_is_refused_in_one_line(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "replayed"
    assert main(["--set", str(_bag_set(tmp_path)), "--out", str(out)]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "is a bag source (format: bag)" in errors[0]
    assert not out.exists()
