"""One declaration per setting (mtl_perception.schema) drives the ROS parameter table,
`ros2 param set`'s checks, the core's own validation, the `--set key=value` parser
and docs/settings.md."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import MappingProxyType

import pytest

from mtl_perception.ros import params
from mtl_perception.ros.params import BY_NAME, NodeSettings, build_params, check_value
from mtl_perception.schema import SETTING, declared
from mtl_perception.settings import SettingsError, apply_overrides, from_dict
from mtl_perception.stream import LIVE_SETTINGS, StreamConfig

ROOT = Path(__file__).resolve().parents[1]


def _with_range(monkeypatch: pytest.MonkeyPatch, cls: type, name: str, **rule: float) -> None:
    (field,) = [f for f in dataclasses.fields(cls) if f.name == name]
    changed = dataclasses.replace(field.metadata[SETTING], **rule)
    monkeypatch.setattr(field, "metadata", MappingProxyType({SETTING: changed}))


def test_a_range_changed_in_the_schema_changes_ros_and_set_alike(
        monkeypatch: pytest.MonkeyPatch) -> None:
    as_set = apply_overrides({}, ["target_fps=100"])  # what --set target_fps=100 gives
    assert from_dict(StreamConfig, as_set).target_fps == 100.0
    assert check_value(BY_NAME["target_fps"], 100.0) is None
    _with_range(monkeypatch, StreamConfig, "target_fps", high=60.0)
    (spec,) = [s for s in build_params() if s.name == "target_fps"]
    assert (spec.low, spec.high) == (0.5, 60.0)  # the descriptor's floating_point_range
    assert spec.constraints.startswith("range [0.5, 60]")
    assert check_value(spec, 100.0) == "target_fps must be in [0.5, 60], got 100.0"
    with pytest.raises(SettingsError, match=r"target_fps must be in \[0\.5, 60\], got 100\.0"):
        from_dict(StreamConfig, as_set)


def test_the_node_and_the_core_had_disagreed_on_target_fps_and_now_cannot() -> None:
    # Before the schema: [0.5, 240] for ROS, (0, 1000] for the core and --set.
    with pytest.raises(ValueError, match=r"target_fps must be in \[0\.5, 240\]"):
        StreamConfig(target_fps=500.0)
    assert check_value(BY_NAME["target_fps"], 500.0) is not None


def test_every_parameter_is_one_declared_field() -> None:
    node = {row.name for row in declared(NodeSettings)}
    stream = {row.name for row in declared(StreamConfig)}
    assert {s.name for s in params.PARAMS} == node | (stream - {"offline_queue"})
    assert not node & stream
    assert {s.name for s in params.PARAMS if s.live} == set(LIVE_SETTINGS)
    assert BY_NAME["smoothing"].choices == ("none", "ema", "mean")  # from the Literal
    assert BY_NAME["qos_reliability"].default == "auto"


def test_node_settings_come_from_the_same_declarations() -> None:
    with pytest.raises(SettingsError, match="qos_reliability"):
        from_dict(NodeSettings, {"qos_reliability": "sometimes"})
    settings = from_dict(NodeSettings, {"image_topics": ["/a", "/b"], "qos_depth": 3})
    assert settings.image_topics == ("/a", "/b") and settings.qos_depth == 3


def test_docs_settings_page_holds_the_generated_tables() -> None:
    page = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    assert params.with_tables(page) == page, (
        "docs/settings.md is out of date: python -m mtl_perception.ros.params "
        "--write docs/settings.md")
    assert "| `target_fps` | double | `15.0` | [0.5, 240] | no |" in page
    assert "| `qos_reliability` | string | `\"auto\"` |" in page


@pytest.mark.parametrize(("text", "value"), [
    ("1e-3", 0.001), ("5E4", 50000.0), ("-2.5e+3", -2500.0), ("1.0e-3", 0.001),
    ("e3", "e3"), ("1e", "1e"), ("12", 12), ("010", 10), ("-007", -7), ("0o17", 15),
    ("0x1F", 31), ("1_5", "1_5"), ("1:30", "1:30"), ("0b101", "0b101"), ("1_0.5", "1_0.5"),
    (".5", 0.5), ("1.", 1.0)])
def test_numbers_are_read_as_yaml_1_2_in_files_and_overrides(text: str, value: object) -> None:
    """PyYAML (YAML 1.1) read `1e-3` as a string (`lr=1e-3` was refused as "expected a
    number"), `010` as the octal 8, `1_5` as 15 and `1:30` as the sexagesimal 90; as in
    YAML 1.2 and JSON they are 0.001, 10 and text now."""
    from mtl_perception.settings import parse_yaml

    parsed = parse_yaml(text)
    assert parsed == value and type(parsed) is type(value)
    assert apply_overrides({}, [f"lr={text}"]) == {"lr": value}


@pytest.mark.parametrize("text", ["1_5", "1:30"])
def test_a_number_yaml_1_1_would_have_read_otherwise_is_refused_by_name(text: str) -> None:
    """`target_fps=1_5` was silently 15 and `1:30` was 90: now the setting names them."""
    data = apply_overrides({}, [f"target_fps={text}"])
    with pytest.raises(SettingsError, match=rf"target_fps.*expected a number.*{text}"):
        from_dict(StreamConfig, data, "stream")
