"""Hostile-input probes of `synth`, `summarize --json` and `cache` (probe round: tools).

A render worker that dies must end the run (Pool alone waits for its result
forever); `--out` or `--json` inside a synthetic set is refused (a file added there
makes the set no longer provably synth's); an option whose value is the problem is
the one named; non-finite sizes and a file as the cache root are one line, exit 2.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from mtl_perception.outputs import enclosing_output
from training.__main__ import main
from training.synthetic.output import SynthOutputError, why_not_ours
from training.synthetic.writer import (
    SynthSettings,
    SynthSettingsError,
    SynthWorkerError,
    _in_workers,
    generate,
)

TINY = SynthSettings(
    actions_per_class=4, gestures_per_class=4, width=32, height=24, frames=8, gesture_frames=16,
    actions=("Walk",), gestures=("wave",), train_sessions=0, test_sessions=0, backgrounds=0,
    real_footage=0,
)
CLI_TINY = ["--actions-per-class", "4", "--gestures-per-class", "4", "--size", "32x24",
            "--frames", "8", "--gesture-frames", "16", "--actions", "Walk", "--gestures", "wave",
            "--train-sessions", "0", "--test-sessions", "0", "--backgrounds", "0",
            "--real-footage", "0", "--workers", "1"]


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("probe_synth") / "set"
    generate(TINY, out, workers=1)
    return out


def test_a_dead_render_worker_ends_the_run_instead_of_hanging() -> None:
    # os._exit(3) in a worker: the process is gone and its task with it
    with pytest.raises(SynthWorkerError, match="exit status 3"):
        list(_in_workers(os._exit, [3, 3, 3], 2))


def test_workers_give_results_in_task_order() -> None:
    assert list(_in_workers(abs, [-3, 2, -1, 5, -4], 2)) == [3, 2, 1, 5, 4]


def test_out_inside_a_set_is_refused_and_the_set_stays_ours(tiny_set: Path) -> None:
    for inner in (tiny_set / "more", tiny_set / "UCF-101" / "Walk" / "x"):
        with pytest.raises(SynthOutputError, match="an earlier training.synthetic output"):
            generate(TINY, inner, workers=1)
        assert not inner.exists()
    assert sorted(p.name for p in tiny_set.parent.iterdir()) == ["set"]  # no partial sibling
    assert why_not_ours(tiny_set) is None
    assert enclosing_output(tiny_set) is None  # the set itself may be replaced


def test_out_inside_a_set_via_the_cli_is_one_line_exit_2(
        tiny_set: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert main(["synth", "--out", str(tiny_set / "more"), *CLI_TINY]) == 2
    assert f"lies inside {tiny_set}, an earlier training.synthetic output" in caplog.text
    assert why_not_ours(tiny_set) is None


@pytest.mark.parametrize(("option", "value", "named"), [
    ("test_groups", 5, "test_groups"), ("test_subjects", 2, "test_subjects")])
def test_too_many_test_groups_or_subjects_name_that_option(option: str, value: int,
                                                           named: str) -> None:
    with pytest.raises(SynthSettingsError, match="lower " + named) as info:
        replace(TINY, **{option: value})
    assert info.value.setting == named


def test_test_groups_larger_than_the_groups_names_the_cli_option(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert main(["synth", "--out", str(tmp_path / "s"), *CLI_TINY, "--test-groups", "9"]) == 2
    assert "--test-groups:" in caplog.text
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("value", ["", ",,", " , "])
def test_an_empty_class_list_says_none_was_named(value: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["synth", "--out", str(tmp_path / "s"), *CLI_TINY, "--actions", value])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --actions: no class named" in err and "unknown []" not in err


def test_summarize_json_inside_a_synthetic_set_is_refused(
        tiny_set: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tiny_set / "UCF-101" / "summary.json"
    assert main(["summarize", "--config", str(tiny_set / "set.yaml"),
                 "--json", str(target)]) == 2
    assert f"lies inside {tiny_set}, an earlier training.synthetic output" in \
        capsys.readouterr().err
    assert not target.exists() and why_not_ours(tiny_set) is None
    outside = tmp_path / "summary.json"  # beside the set is fine
    assert main(["summarize", "--config", str(tiny_set / "set.yaml"),
                 "--json", str(outside)]) == 0 and outside.is_file()


@pytest.mark.parametrize("value", ["inf", "1e300", "nan", "-1"])
def test_cache_max_gb_out_of_range_is_one_line_exit_2(
        value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cache", "--root", str(tmp_path), "--prune", "--max-gb", value]) == 2
    assert "--max-gb must be in" in capsys.readouterr().out


def test_cache_root_that_is_a_file_is_refused(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "afile"
    root.write_text("mine")
    assert main(["cache", "--root", str(root), "--prune"]) == 2
    assert "is not a folder" in capsys.readouterr().out
    assert root.read_text() == "mine"
