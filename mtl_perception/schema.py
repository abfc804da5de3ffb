"""One declaration per setting: type, default, range, choices, live or not, help.

A settings dataclass declares each field with `setting(...)`; the field's
type hint gives the type (a `Literal` gives the choices), its metadata the
rest. Everything that needs to know a setting reads it from here:
- the dataclass's own validation (`check_fields` in `__post_init__`), which is
  what `settings.from_dict` and the `--set key=value` overrides go through;
- the ROS parameter table of the node (`mtl_perception.ros.params.build_params`)
  and from it the parameter descriptors and `ros2 param set` checks;
- the settings tables of the documentation (`settings_table`, checked
  against docs/settings.md by a test).
So a range changed here changes all of them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass
from typing import Any, Literal

SETTING = "setting"  # the metadata key of a field declared with `setting`
RosType = Literal["string", "string_array", "bool", "integer", "double"]


@dataclass(frozen=True)
class Setting:
    """What one settings field declares besides its type and default.

    `low`/`high` are inclusive bounds (ROS parameter ranges are inclusive);
    `choices` extends a Literal's values (or names the allowed forms of a free
    string); `live`: may change while running; `fixed`: why it cannot (said to
    the user who tries); `ros`: declared as a node parameter.
    """

    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    live: bool = False
    fixed: str = ""
    ros: bool = True


def setting(default: Any, help: str, **rule: Any) -> Any:
    """A dataclass field with its `Setting` (keyword arguments: the `Setting` fields)."""
    return dataclasses.field(default=default, metadata={SETTING: Setting(help, **rule)})


@dataclass(frozen=True)
class Declared:
    """A settings field resolved: the name, the type for ROS, the default and the rule."""

    name: str
    type: RosType
    default: Any
    rule: Setting
    choices: tuple[str, ...]

    @property
    def bounds(self) -> str:
        return f"[{_number(self.rule.low)}, {_number(self.rule.high)}]"


def declared(cls: type) -> tuple[Declared, ...]:
    """The fields of settings dataclass `cls` declared with `setting`, in order."""
    hints = typing.get_type_hints(cls)
    rows = []
    for field in dataclasses.fields(cls):
        rule = field.metadata.get(SETTING)
        if rule is None:
            continue
        hint = hints[field.name]
        literal = typing.get_args(hint) if typing.get_origin(hint) is Literal else ()
        choices = tuple(str(c) for c in literal) + tuple(
            c for c in rule.choices if c not in literal)
        rows.append(Declared(field.name, ros_type(hint), field.default, rule, choices))
    return tuple(rows)


def ros_type(hint: Any) -> RosType:
    """The ROS parameter type of a field type."""
    origin = typing.get_origin(hint)
    if origin is Literal or hint is str:
        return "string"
    if origin is tuple and typing.get_args(hint)[:1] == (str,):
        return "string_array"
    if hint is bool:
        return "bool"
    if hint is int:
        return "integer"
    if hint is float:
        return "double"
    raise TypeError(f"no ROS parameter type for {hint!r}")


def problem(row: Declared, value: Any) -> str | None:
    """Why `value` breaks the range or choices of `row` (its type already checked), or None."""
    if row.type in ("integer", "double"):
        if not math.isfinite(float(value)):
            return f"{row.name} must be a finite number, got {value!r}"
        low, high = row.rule.low, row.rule.high
        if (low is not None and value < low) or (high is not None and value > high):
            if high is None:
                return f"{row.name} must be >= {_number(low)}, got {value!r}"
            return f"{row.name} must be in {row.bounds}, got {value!r}"
    # A Literal allows exactly its values; a free string (device) checks itself.
    if row.type == "string" and row.choices and not row.rule.choices and value not in row.choices:
        return f"{row.name} must be one of {list(row.choices)}, got {value!r}"
    return None


def check_fields(obj: Any) -> str | None:
    """The first field of dataclass instance `obj` outside its range or choices, or None."""
    for row in declared(type(obj)):
        reason = problem(row, getattr(obj, row.name))
        if reason is not None:
            return reason
    return None


def constraints(row: Declared) -> str:
    """Human-readable constraints (`ros2 param describe`, the docs' tables)."""
    parts = []
    if row.choices:
        parts.append("one of: " + ", ".join(row.choices))
    if row.rule.low is not None and row.rule.high is not None:
        parts.append(f"range {row.bounds}")
    elif row.rule.low is not None:
        parts.append(f">= {_number(row.rule.low)}")
    parts.append("changeable at run time" if row.rule.live else "read at configure")
    return "; ".join(parts)


def settings_table(rows: tuple[Declared, ...]) -> str:
    """A Markdown table of settings: name, type, default, constraints, help."""
    lines = ["| setting | type | default | allowed | live | what it does |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        default = json.dumps(list(row.default) if isinstance(row.default, tuple) else row.default)
        allowed = [f"one of {', '.join(row.choices)}"] if row.choices else []
        if row.rule.low is not None:
            high = row.rule.high is not None
            allowed.append(row.bounds if high else f">= {_number(row.rule.low)}")
        help_text = row.rule.help.replace("|", "\\|")
        lines.append(f"| `{row.name}` | {row.type} | `{default}` | {'; '.join(allowed) or '-'} "
                     f"| {'yes' if row.rule.live else 'no'} | {help_text} |")
    return "\n".join(lines) + "\n"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"
