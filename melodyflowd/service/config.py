"""Config file + CLI overrides -> one frozen Settings (melodyflowd/settings.py).

The packaged defaults file, then the --config file, then command-line flags; every value
is checked here, at the edge, against its field's type hint and the ranges and choices
below, and every problem is one UserError naming file:line and what is accepted.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path

import yaml

from melodyflowd.errors import UserError
from melodyflowd.files import CONFIG_MAX_BYTES, read_bytes
from melodyflowd.generate.environment import environment
from melodyflowd.numbers import plain
from melodyflowd.settings import CHOICES, ControlMap, Settings
from melodyflowd.yamlnodes import hostile_detail, node_kind, yaml_problem

# ---------------------------------------------------------------------------------------------
# Loading: the packaged defaults file <- the --config file <- command-line overrides.
# ---------------------------------------------------------------------------------------------

# Settings that are not read from any config file (they record where the others came from).
_INTERNAL = frozenset({"config_file", "overrides"})

# (low, high, low is exclusive); None = unbounded. Values in Settings units.
_RANGES: dict[str, tuple[float | None, float | None, bool]] = {
    "stats_interval": (0, 86400, False),
    "engine.split": (0, 127, False),
    "engine.anticipation_ms": (0, 2000, False),
    "generation.variations": (1, 64, False),
    "generation.seed": (0, 2**63 - 1, False),
    "generation.penalty": (0, 100, False),
    "generation.temperature": (0.05, 5.0, False),
    "generation.top_p": (0, 1, True),
    "generation.trend_notes": (0, 64, False),
    "generation.trend_range": (1, 127, False),
    "generation.low": (0, 127, False),
    "generation.high": (0, 127, False),
    "view.port": (0, 65535, False),
}
# Every field of ControlMap but its channel is a control CC.
_CONTROL_KEYS = tuple(f.name for f in fields(ControlMap) if f.name != "channel")
for _name in _CONTROL_KEYS:
    _RANGES[f"engine.controls.{_name}"] = (1, 119, False)
# CCs a control may not take, because the engine must pass them on: bank select (it goes
# with the program changes that pass through); 120-127 are channel mode messages (All
# Sound Off, All Notes Off, ...), outside the controls' range.
_RESERVED_CCS = {0: "Bank Select", 32: "Bank Select (LSB)"}
# Settings with a gap at the bottom of their range: 0 turns them off, else at least this.
_ZERO_OR_AT_LEAST = {"stats_interval": 0.25}       # at most 4 stats lines a second
# Port names: JACK client names hold at most 63 bytes, ALSA's 63 characters.
_MAX_LENGTH = {"ports.in_name": 63, "ports.out_name": 63}

# MIDI channels: 1-16 in a config file (as DAWs number them), 0-15 in Settings.
_CHANNELS = frozenset({"engine.channels", "engine.out_channel", "engine.controls.channel",
                       "engine.chord_channel", "engine.bass_channel"})
# Paths: in a config file, relative to the file's folder; `~` is expanded.
_PATHS = frozenset({"chart", "phrases", "generation.cache_dir"})
# Either a path or a name (hub id, style): resolved like a path only when that path exists.
_PATH_OR_NAME = frozenset({"generation.model", "generation.adapter"})
# Optional settings where `false` (YAML `off`, `no`) also means "off".
_FALSE_IS_NONE = frozenset(f"engine.controls.{name}" for name in (*_CONTROL_KEYS, "channel"))
# Settings that are never None in Settings, where null in a file means "work it out".
_NULL_IS_AUTO = {"ports.backend": "null for auto"}
# Lists of text where one text alone means a list of one (`connect_in: Keystation`).
_TEXT_IS_LIST = frozenset({"ports.connect_in", "ports.connect_out"})


def default_config_text() -> str:
    """The packaged defaults file (every setting, commented): `melodyflow config` prints it."""
    return resources.files("melodyflowd").joinpath("default.yaml").read_text(encoding="utf-8")


def default_config_path() -> str:
    return str(resources.files("melodyflowd").joinpath("default.yaml"))


@dataclass(frozen=True, slots=True)
class _Value:
    value: object
    file: str | None        # None: a command-line override
    line: int | None
    column: int | None

    def error(self, key: str, message: str) -> UserError:
        if self.file is None:
            return UserError(f"option {key}: {message}")
        return UserError(f"{key}: {message}", file=self.file, line=self.line, column=self.column)


def _schema(cls: type) -> dict[str, object]:
    """Field name -> resolved type hint, for the settings a config file may hold."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls) if f.name not in _INTERNAL}


def _describe(hint: object) -> str:
    if dataclasses.is_dataclass(hint):
        return "a mapping of settings"
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        inner = [a for a in args if a is not type(None)]
        return " or ".join(_describe(a) for a in inner) + " or null"
    if origin is tuple:
        return f"a list of {_describe(args[0])}s"
    return {int: "a whole number", float: "a number", bool: "true or false",
            str: "text"}.get(hint, str(hint))  # type: ignore[call-overload]


def _show(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _read_file(path: str) -> tuple[dict[str, _Value], str]:
    """Read a config file into {dotted key: value with its file:line}. Unknown keys raise."""
    try:
        text = read_bytes(path, "the config file", CONFIG_MAX_BYTES).decode("utf-8")
    except OSError as exc:
        raise UserError(f"cannot read the config file: {exc.strerror or exc}", file=path) from None
    except UnicodeDecodeError:
        raise UserError("the config file is not UTF-8 text", file=path) from None
    return _parse(text, path), path


def _parse(text: str, path: str) -> dict[str, _Value]:
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        flat: dict[str, _Value] = {}
        if root is None:                     # an empty file (or only comments): no settings
            return flat
        if not isinstance(root, yaml.MappingNode):
            raise UserError("a config file is a mapping of settings (key: value), not "
                            f"{node_kind(root)}; see {default_config_path()}",
                            file=path, line=root.start_mark.line + 1)
        _walk(loader, root, Settings, "", path, flat)
        return flat
    except yaml.MarkedYAMLError as exc:
        problem, mark = yaml_problem(exc, "syntax error")
        raise UserError(f"not valid YAML: {problem}", file=path,
                        line=mark.line + 1 if mark else None,
                        column=mark.column + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise UserError(f"not valid YAML: {exc}", file=path) from None
    except (RecursionError, ValueError) as exc:
        detail = hostile_detail(exc, "a config")
        if detail is None:
            raise
        raise UserError(detail, file=path) from None
    finally:
        loader.dispose()


def _walk(loader: yaml.SafeLoader, node: yaml.MappingNode, cls: type, prefix: str, path: str,
          flat: dict[str, _Value]) -> None:
    schema = _schema(cls)
    seen: dict[str, int] = {}
    for key_node, value_node in node.value:
        line = key_node.start_mark.line + 1
        column = key_node.start_mark.column + 1
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        if not isinstance(key, str) or key not in schema:
            shown = repr(key) if isinstance(key, str) else "a non-text key"
            where = f"in {prefix[:-1]}" if prefix else "at the top level"
            close = difflib.get_close_matches(key, list(schema), n=1) if isinstance(key, str) \
                else []
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise UserError(f"unknown key {shown}{hint}; keys accepted {where}: "
                            + ", ".join(schema), file=path, line=line, column=column)
        if key in seen:
            raise UserError(f"{prefix}{key}: given twice (first on line {seen[key]})",
                            file=path, line=line, column=column)
        seen[key] = line
        hint = schema[key]
        dotted = prefix + key
        if dataclasses.is_dataclass(hint):
            if not isinstance(value_node, yaml.MappingNode):
                # `engine:` with nothing under it is an empty section, not an error.
                if isinstance(value_node, yaml.ScalarNode) and value_node.tag.endswith(":null"):
                    continue
                raise UserError(f"{dotted}: expected a mapping of settings under it, got "
                                f"{node_kind(value_node)}; keys accepted: "
                                + ", ".join(_schema(hint)),  # type: ignore[arg-type]
                                file=path, line=value_node.start_mark.line + 1)
            _walk(loader, value_node, hint, dotted + ".", path, flat)  # type: ignore[arg-type]
            continue
        value = loader.construct_object(value_node, deep=True)
        mark = value_node.start_mark
        flat[dotted] = _Value(value, path, mark.line + 1, mark.column + 1)


def _hint_for(dotted: str) -> object:
    cls: object = Settings
    hint: object = None
    for part in dotted.split("."):
        if not dataclasses.is_dataclass(cls):
            raise KeyError(dotted)
        schema = _schema(cls)  # type: ignore[arg-type]
        if part not in schema:
            raise KeyError(dotted)
        hint = cls = schema[part]
    return hint


def _convert(dotted: str, hint: object, item: _Value, from_file: bool) -> object:
    """Check one value against its type, choices and range; return it in Settings units."""
    origin = typing.get_origin(hint)
    if item.value is None and dotted in _NULL_IS_AUTO:
        return None
    if origin in (types.UnionType, typing.Union):
        return _optional(dotted, hint, item, from_file)
    if origin is tuple:
        return _sequence(dotted, hint, item, from_file)
    if hint is bool:
        return _boolean(dotted, item)
    if hint is str:
        return _text(dotted, item)
    if hint in (int, float):
        return _number(dotted, hint, item, channel=dotted in _CHANNELS and from_file)
    raise item.error(dotted, f"{_show(item.value)} is not accepted")  # a type the schema lacks


def _rejected(dotted: str, hint: object, item: _Value, channel: bool = False) -> UserError:
    return item.error(dotted, f"{_show(item.value)} is not accepted; expected "
                      + _accepted(dotted, hint, channel))


def _optional(dotted: str, hint: object, item: _Value, from_file: bool) -> object:
    """X | None: null (or false where false means none), else an X."""
    if item.value is None or (item.value is False and dotted in _FALSE_IS_NONE):
        return None
    inner = [a for a in typing.get_args(hint) if a is not type(None)][0]
    return _convert(dotted, inner, item, from_file)


def _sequence(dotted: str, hint: object, item: _Value, from_file: bool) -> tuple:
    """tuple[X, ...]: a list of X, or one X standing for a list of one (`channels: 2`,
    `connect_in: keystation`)."""
    value = item.value
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if isinstance(value, str) and dotted in _TEXT_IS_LIST:
        value = [value]
    if not isinstance(value, list | tuple):
        raise _rejected(dotted, hint, item, dotted in _CHANNELS and from_file)
    inner = typing.get_args(hint)[0]
    return tuple(_convert(dotted, inner, _Value(v, item.file, item.line, item.column),
                          from_file) for v in value)


def _boolean(dotted: str, item: _Value) -> bool:
    if not isinstance(item.value, bool):
        raise item.error(dotted, f"{_show(item.value)} is not accepted; expected true or false")
    return item.value


def _text(dotted: str, item: _Value) -> str:
    """Non-empty text, one of the key's choices where it has them."""
    value = item.value
    if not isinstance(value, str) or not value.strip():
        raise _rejected(dotted, str, item)
    limit = _MAX_LENGTH.get(dotted)
    if limit is not None and len(value.encode()) > limit:
        raise item.error(dotted, f"{value[:20]!r}... is {len(value.encode())} bytes long; "
                         f"at most {limit} bytes are accepted")
    choices = CHOICES.get(dotted)
    if choices and value not in choices:
        close = difflib.get_close_matches(value, choices, n=1)
        hint_text = f" (did you mean '{close[0]}'?)" if close else ""
        raise item.error(dotted, f"{value!r} is not accepted{hint_text}; use one of: "
                         + ", ".join(choices))
    return value


def _number(dotted: str, hint: object, item: _Value, channel: bool) -> int | float:
    """An int or float (not a bool, not NaN) within the key's range; a channel written 1-16
    in a file comes back 0-15."""
    value = item.value
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if not numeric or (hint is int and not isinstance(value, int)) or value != value:
        raise _rejected(dotted, hint, item, channel)
    if channel:
        return _file_channel(dotted, value, item)
    if dotted in _CHANNELS and not 0 <= value <= 15:
        raise item.error(dotted, f"{value} is not accepted; channels here are 0-15")
    low, high, exclusive = _RANGES.get(dotted, (None, None, False))
    too_low = low is not None and (value <= low if exclusive else value < low)
    if too_low or (high is not None and value > high):
        raise item.error(dotted, f"{value} is out of range; expected "
                         + _accepted(dotted, hint, channel))
    floor = _ZERO_OR_AT_LEAST.get(dotted)
    if floor is not None and 0 < value < floor:
        raise item.error(dotted, f"{value} is out of range; expected 0 (off) or "
                         f"{plain(floor)} to {plain(high or floor)}")
    if dotted.startswith("engine.controls.") and value in _RESERVED_CCS:
        raise item.error(dotted, f"CC {value} ({_RESERVED_CCS[value]}) must pass through "
                         "to the synth; give a control another CC from 1 to 119 (not 32)")
    return float(value) if hint is float else value


def _file_channel(dotted: str, value: int | float, item: _Value) -> int:
    """A MIDI channel as a config file writes it (1-16), in Settings units (0-15)."""
    if not 1 <= value <= 16:
        raise item.error(dotted, f"channel {value} is not accepted; MIDI channels are "
                         "numbered 1-16")
    return int(value) - 1


def _accepted(dotted: str, hint: object, channel: bool) -> str:
    if channel:
        if dotted == "engine.channels":
            return "a list of MIDI channels 1-16, or [] for all but 10 (drums)"
        return "a MIDI channel 1-16, or null"
    text = _describe(hint)
    low, high, exclusive = _RANGES.get(dotted, (None, None, False))
    if low is not None and high is not None:
        text += f" {'greater than' if exclusive else 'from'} {plain(low)} " \
                f"{'and at most' if exclusive else 'to'} {plain(high)}"
    elif low is not None:
        text += f" of at least {plain(low)}"
    if dotted in CHOICES:
        text += ": " + ", ".join(CHOICES[dotted])
    if dotted in _NULL_IS_AUTO:
        text += f", or {_NULL_IS_AUTO[dotted]}"
    return text


def _resolve_path(dotted: str, value: object, config_dir: Path) -> object:
    if not isinstance(value, str) or not value.strip() or "://" in value:
        return value                  # an iReal Pro link (irealb://...) is not a path
    expanded = os.path.expanduser(value)
    if os.path.isabs(expanded):
        return expanded
    candidate = config_dir / expanded
    if dotted in _PATHS or candidate.exists():
        return str(candidate)
    return value


def _build(cls: type, values: dict[str, object], prefix: str = "") -> object:
    kwargs: dict[str, object] = {}
    for name, hint in _schema(cls).items():
        dotted = prefix + name
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, values, dotted + ".")  # type: ignore[arg-type]
        elif dotted in values:
            kwargs[name] = values[dotted]
    return cls(**kwargs)


def _rank(item: _Value) -> tuple[int, int]:
    """Which of two clashing values to blame: an override, else the user's file, else later."""
    source = 2 if item.file is None else 0 if item.file == default_config_path() else 1
    return source, item.line or 0


def _check_together(settings: Settings, items: dict[str, _Value]) -> None:
    """Checks that involve more than one setting."""
    gen = settings.generation
    if gen.high - gen.low < 12:
        key = max(("generation.low", "generation.high"), key=lambda k: _rank(items[k]))
        raise items[key].error(key, f"low {gen.low} and high {gen.high} must be at least an "
                               "octave apart (high - low >= 12)")
    controls = settings.engine.controls
    used: dict[int, str] = {}
    for name in _CONTROL_KEYS:
        number = getattr(controls, name)
        if number is None:
            continue
        if number in used:
            key = f"engine.controls.{name}"
            raise items[key].error(key, f"CC {number} is already the {used[number]} control; "
                                   "give each control its own CC number, or null to turn one off")
        used[number] = name
    address = settings.view.address
    if not _is_address(address):
        key = "view.address"
        raise items[key].error(key, f"{address!r} is not accepted; expected an IP address "
                               "such as 127.0.0.1 (this machine only), 0.0.0.0 (every "
                               "interface), ::1, or localhost")


def _is_address(text: str) -> bool:
    import ipaddress

    if text == "localhost":
        return True
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def load_settings(config_file: str | None = None, overrides: dict[str, object] | None = None
                  ) -> Settings:
    """Defaults file <- config file <- overrides; one frozen Settings.

    The defaults are the packaged `melodyflowd/default.yaml` (also `config/default.yaml`).
    Overrides use dotted keys ("ports.backend", "generation.seed") and Settings units
    (channels 0-15); those whose value is None are ignored (a flag that was not given).
    Every unknown key or bad value is a UserError naming file:line and what is accepted.
    """
    environment()                    # a bad MELODYFLOW_* value stops here, not in the child
    items: dict[str, _Value] = dict(_parse(default_config_text(), default_config_path()))
    if config_file is not None:
        from_file, _ = _read_file(config_file)
        config_dir = Path(config_file).resolve().parent
        for dotted, item in from_file.items():
            if dotted in _PATHS or dotted in _PATH_OR_NAME:
                item = _Value(_resolve_path(dotted, item.value, config_dir), item.file,
                              item.line, item.column)
            items[dotted] = item
    values: dict[str, object] = {}
    for dotted, item in items.items():
        values[dotted] = _convert(dotted, _hint_for(dotted), item, from_file=True)
    kept: list[tuple[str, object]] = []
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        try:
            hint = _hint_for(dotted)
        except KeyError:
            raise KeyError(f"load_settings: no setting {dotted!r}") from None
        item = _Value(list(value) if isinstance(value, tuple) else value, None, None, None)
        items[dotted] = item
        values[dotted] = _convert(dotted, hint, item, from_file=False)
        kept.append((dotted, value))
    if values.get("ports.backend") is None:
        values["ports.backend"] = "auto"
    settings = _build(Settings, values)
    assert isinstance(settings, Settings)
    _check_together(settings, items)
    return dataclasses.replace(settings, config_file=config_file, overrides=tuple(kept))


def reload_settings(settings: Settings) -> Settings:
    """Read the same config file with the same overrides again (for SIGHUP)."""
    return load_settings(settings.config_file, dict(settings.overrides))
