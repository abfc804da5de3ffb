"""`--help` of the command lines shows each option's real default and never
`(default: None)`: it was appended to required options and to options whose help
already says what leaving them out does (`--image-topic`: "default: the bag's only
image topic ... (default: None)")."""

from __future__ import annotations

import pytest

from mtl_perception.bag.evaluate import build_parser
from training.__main__ import main as training_main
from training.tools.to_bag import main as to_bag_main


def test_evaluate_bag_help_keeps_real_defaults_only() -> None:
    text = build_parser().format_help()
    assert "(default: None)" not in " ".join(text.split())
    assert "(default: cpu)" in text and "(default: 0.5)" in text
    assert "/camera/image_raw)\n" in text  # --image-topic's own words end its help


@pytest.mark.parametrize("command", ["train", "export", "fit-gate", "evaluate", "to-bag"])
def test_training_help_keeps_real_defaults_only(
        command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        training_main([command, "--help"])
    assert stop.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in text and "(default: " in text


def test_dataset_to_bag_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        to_bag_main(["--help"])
    text = " ".join(capsys.readouterr().out.split())  # help lines wrap anywhere
    assert "(default: None)" not in text
    assert "(default: mcap)" in text and "(default: 90)" in text and "(default: test)" in text
