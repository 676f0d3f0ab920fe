"""YAML chord chart -> Chart. Pure parsing (load_chart reads the file); every error names file:line.

The format is documented, with examples, in docs/charts.md::

    title: Blues for Alice
    tempo: 180                    # quarter-note bpm (default 120)
    time: 4/4
    key: F
    style: bebop
    sections:
      A: "|: Fj7 | Em7b5 A7 | 1. Dm7 G7 :| 2. Cm7 F7 |"
      B: "| Bb7 (E7) | _ | 3/4 Am7 D7 | 4/4 Gm7 C7 |"
    form: [A, B]

or ``chords:`` for a single section. Bars are between ``|``; chords share a bar
evenly unless a count follows a colon (``C7:3 F7:1``, in the meter's beat unit);
``/`` extends the chord before it by one share; ``%`` repeats the previous bar,
``_`` is an empty bar (the chord before holds), ``NC`` no chord; ``(Db7)`` after a
chord is its alternate; ``|:`` ``:|`` (``:|x3``) and ``1.`` ``2.`` are repeats and
endings inside a section (unrolled here); ``3/4`` at the start of a bar changes the
meter for the rest of its section. The form loops. Suspicious bars (more chords
than beats, stray punctuation) become Chart.warnings with file:line:column.

Inside a Chart all beat positions are in quarter notes (MIDI clock beats), so a
6/8 bar is 3.0 beats long; bars are in playing order (repeats unrolled).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from melodyflowd.errors import UserError
from melodyflowd.files import CHART_MAX_BYTES, read_bytes
from melodyflowd.music import meter
from melodyflowd.music.form import Signs, playing_order
from melodyflowd.music.meter import bar_beats, quarters_per_unit
from melodyflowd.music.theory import NO_CHORD, Chord, ChordError, note_names, parse_chord
from melodyflowd.numbers import json_number, plain
from melodyflowd.yamlnodes import hostile_detail, node_kind, yaml_problem


class ChartError(UserError):
    """A chart that cannot be read: file:line:column, the bad token, what is accepted."""


@dataclass(frozen=True, slots=True)
class ChordSpan:
    chord: Chord
    start_beat: float      # from the start of the bar
    beats: float
    alternate: Chord | None = None   # written above it in parentheses: C7 (Gb7)


@dataclass(frozen=True, slots=True)
class Bar:
    index: int             # position in the form unrolled once, 0-based
    section: str           # section name ("A"), or "" for the `chords:` shorthand
    chords: tuple[ChordSpan, ...]
    time: tuple[int, int] | None = None   # its own meter where it differs from the chart's
    empty: bool = False    # written `_`: no new chord, the one before it holds

    def chord_at(self, beat: float) -> Chord:
        """The chord sounding at `beat` (from the start of this bar)."""
        for span in reversed(self.chords):
            if beat >= span.start_beat:
                return span.chord
        return self.chords[0].chord


@dataclass(frozen=True, slots=True)
class Chart:
    title: str
    tempo: float                   # quarter-note bpm
    time: tuple[int, int]          # (beats per bar, beat unit), e.g. (4, 4)
    key: str | None
    style: str | None
    bars: tuple[Bar, ...]          # the form unrolled once, in playing order
    source: str = "<chart>"        # file name, for messages
    form: tuple[str, ...] = ()     # section names in playing order ("" for chords:)
    warnings: tuple[str, ...] = ()  # "file:line:column: what looks wrong" (check prints them)
    # The start beat of every bar of the form and, last, the form's length (meter.bar_starts)
    bar_starts: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "bar_starts",
                           meter.bar_starts(self.bar_beats(i) for i in range(len(self.bars))))

    @property
    def beats_per_bar(self) -> float:
        """Length of a bar of the chart's own meter in quarter-note beats (6/8 -> 3.0); a
        bar with a meter of its own has its own length (Chart.bar_beats)."""
        return bar_beats(self.time)

    def bar_beats(self, i: int) -> float:
        """Length of bar `i` of the form in quarter-note beats, in its own meter."""
        bar = self.bars[i % len(self.bars)]
        return bar_beats(bar.time or self.time)

    @property
    def form_beats(self) -> float:
        """Length of the form, once through, in quarter-note beats."""
        return self.bar_starts[-1]

    def bar_start(self, bar_number: int) -> float:
        """The beat (since the start) where bar `bar_number` begins; the form loops."""
        return meter.bar_start(self.bar_starts, bar_number)

    def locate(self, beat: float) -> tuple[int, float]:
        """(bar number since the start, beat within that bar) for a beat since the start."""
        bar, start = meter.bar_at(self.bar_starts, beat)
        return bar, beat - start

    def bar_at(self, bar_number: int) -> Bar:
        """Bar for an absolute bar count since the start; the form loops."""
        return self.bars[bar_number % len(self.bars)]

    def chord_at(self, bar_number: int, beat: float) -> Chord:
        return self.bar_at(bar_number).chord_at(beat)


KEYS = ("title", "tempo", "time", "key", "style", "sections", "form", "chords", "composer")
DEFAULT_TEMPO = 120.0
MAX_TEMPO = 1000.0
DENOMINATORS = (1, 2, 4, 8, 16, 32)
BAR_SYNTAX = ("write bars between '|', chords split the bar evenly or take Chord:beats, "
              "'/' extends the chord before it, '%' repeats the previous bar, '_' is an "
              "empty bar, NC is no chord (docs/charts.md)")
KEY_RE = re.compile(
    r"^[A-G][#b]?(?:[\s-]?(?:maj|major|min|minor|m|dor|dorian|mix|mixolydian|lyd|lydian|"
    r"phr|phrygian|aeo|aeolian|loc|locrian|ion|ionian|blues|chrom|chromatic)|-)?$",
    re.IGNORECASE)
TIME_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
TOKEN_RE = re.compile(r"\|+:|:\|+(?:x\d+)?|\|+|[^\s|]+")
ENDING_RE = re.compile(r"^[1-9]\.$")
STRAY = ",.;"


# --------------------------------------------------------------------------- locations

class _Source:
    """The chart text and its name: turns YAML nodes (and offsets in their strings) into
    file:line:column."""

    def __init__(self, text: str, filename: str) -> None:
        self.text = text
        self.filename = filename
        self.warnings: list[str] = []

    def warn(self, message: str, node: yaml.Node | None = None,
             offset: int | None = None) -> None:
        """Something that reads but looks wrong: kept as "file:line:column: message"."""
        text = self.error(message, node, offset).format()
        if text not in self.warnings:
            self.warnings.append(text)

    def error(self, message: str, node: yaml.Node | None = None, offset: int | None = None,
              index: int | None = None) -> ChartError:
        if index is None and node is not None:
            index = self.index(node, offset)
        if index is None:
            return ChartError(message, file=self.filename)
        line = self.text.count("\n", 0, index) + 1
        column = index - (self.text.rfind("\n", 0, index) + 1) + 1
        return ChartError(message, file=self.filename, line=line, column=column)

    def index(self, node: yaml.Node, offset: int | None = None) -> int:
        """Index in the text of the node, or of character `offset` of its string value."""
        start = node.start_mark.index
        if offset is None or not isinstance(node, yaml.ScalarNode):
            return start
        positions = self.positions(node)
        return positions.get(offset, start)

    def positions(self, node: yaml.ScalarNode) -> dict[int, int]:
        """Map each non-blank character of a scalar's value to its index in the text.

        The value's non-blank characters appear in the source in the same order
        (YAML folding and indentation only change blanks), so a greedy match
        finds them; escapes in double-quoted strings may leave some unmapped.
        """
        start, end = node.start_mark.index, node.end_mark.index
        raw = self.text[start:end]
        j = 0
        if node.style in ("|", ">"):
            j = raw.find("\n") + 1 if "\n" in raw else len(raw)
        elif node.style in ("'", '"'):
            j = 1
        out: dict[int, int] = {}
        for i, ch in enumerate(node.value):
            if ch.isspace():
                continue
            k = raw.find(ch, j)
            if k < 0:
                break
            out[i] = start + k
            j = k + 1
        return out


# --------------------------------------------------------------------------- parsing

def parse_chart(text: str, filename: str = "<chart>") -> Chart:
    """Parse chart YAML text. Raises ChartError naming filename:line:column."""
    try:
        return _parse_chart(text, filename)
    except (RecursionError, ValueError) as exc:
        detail = hostile_detail(exc, "a YAML chart")
        if detail is None:
            raise
        raise ChartError(detail, file=filename) from None


def _parse_chart(text: str, filename: str) -> Chart:
    src = _Source(text, filename)
    root = _compose(src)
    loader_values = _Values(src)
    if root is None or (isinstance(root, yaml.ScalarNode) and root.tag.endswith(":null")):
        raise src.error("empty chart: write a YAML mapping with chords: \"| Dm7 G7 | C |\" "
                        "or sections: and form:")
    if not isinstance(root, yaml.MappingNode):
        raise src.error(f"wrong YAML type: a chart is a mapping of keys ({', '.join(KEYS)}), "
                        f"not {node_kind(root)}", root)

    entries = _mapping(src, root, "chart")
    for name, (key_node, _) in entries.items():
        if name not in KEYS:
            raise src.error(f"unknown key {name!r}: accepted keys are {', '.join(KEYS)}",
                            key_node)

    title = _text_value(src, loader_values, entries.get("title"), "title")
    if title is None:
        title = Path(filename).stem if not filename.startswith("<") else "untitled"
    _text_value(src, loader_values, entries.get("composer"), "composer")
    tempo = _tempo(src, loader_values, entries.get("tempo"))
    time = _time(src, loader_values, entries.get("time"))
    key = _key(src, loader_values, entries.get("key"))
    style = _text_value(src, loader_values, entries.get("style"), "style")

    sections: dict[str, list[_Written]] = {}
    order: list[str] = []
    if "chords" in entries and "sections" in entries:
        raise src.error("both chords: and sections: given: use chords: for one section, or "
                        "sections: with form:", entries["chords"][0])
    if "chords" in entries:
        if "form" in entries:
            raise src.error("form: needs sections:, but this chart uses the chords: shorthand",
                            entries["form"][0])
        sections[""] = _section_bars(src, entries["chords"][1], time, "chords")
        order = [""]
    elif "sections" in entries:
        key_node, value = entries["sections"]
        if not isinstance(value, yaml.MappingNode) or not value.value:
            raise src.error("sections: must be a mapping of section name to bars, e.g. "
                            "A: \"| Dm7 G7 | C |\"", value if value.start_mark else key_node)
        for name, (_, bars_node) in _mapping(src, value, "sections").items():
            sections[name] = _section_bars(src, bars_node, time, f"section {name}")
            order.append(name)
    else:
        raise src.error("empty chart: no chords: or sections: key; write "
                        "chords: \"| Dm7 G7 | Cmaj7 |\" or sections: with form:", root)

    form = _form(src, entries["form"][1], sections) if "form" in entries else order

    bars: list[Bar] = []
    held: Chord = parse_chord("NC")
    for name in form:
        for written in sections[name]:
            spans, empty = written.spans, written.spans is None
            if spans is None:                 # `_`: the chord before holds for the whole bar
                spans = (ChordSpan(held, 0.0, _clean(bar_beats(written.time))),)
            bars.append(Bar(index=len(bars), section=name, chords=spans,
                            time=written.time if written.time != time else None, empty=empty))
            held = spans[-1].chord
    if all(span.chord.is_no_chord for bar in bars for span in bar.chords):
        src.warn("no chord in the chart: every bar is NC, where any note goes", root)
    return Chart(title=title, tempo=tempo, time=time, key=key, style=style, bars=tuple(bars),
                 source=filename, form=tuple(form), warnings=tuple(src.warnings))


def load_chart(path: str) -> Chart:
    """Read and parse a chart file. Missing/unreadable file -> ChartError."""
    try:
        data = read_bytes(path, "the chart", CHART_MAX_BYTES, ChartError)
    except FileNotFoundError:
        raise ChartError("no such chart file: give the path of a YAML chart", file=path) from None
    except IsADirectoryError:
        raise ChartError("is a directory, not a chart file", file=path) from None
    except OSError as exc:
        raise ChartError(f"cannot read chart file: {exc.strerror}", file=path) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ChartError(f"not a YAML chart: not UTF-8 text (byte {exc.start}); charts are "
                         f"YAML text files", file=path) from None
    return parse_chart(text, path)


def _compose(src: _Source) -> yaml.Node | None:
    if "\x00" in src.text:
        raise src.error("not a YAML chart: the file holds binary data (NUL bytes); charts "
                        "are YAML text files")
    try:
        return yaml.compose(src.text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        problem, mark = yaml_problem(exc, "bad YAML")
        message = (f"not a YAML chart: {problem}; a chart is YAML like "
                   f"'tempo: 120' and 'chords: \"| Dm7 G7 | C |\"'")
        if mark is None:
            raise src.error(message) from None
        raise src.error(message, index=min(mark.index, len(src.text))) from None
    except yaml.YAMLError as exc:
        raise src.error(f"not a YAML chart: {str(exc).splitlines()[0]}") from None


class _Values:
    """Build Python values from nodes exactly as yaml.safe_load would."""

    def __init__(self, src: _Source) -> None:
        self.src = src

    def __call__(self, node: yaml.Node) -> Any:
        loader = yaml.SafeLoader("")
        try:
            return loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            raise self.src.error(f"bad YAML value: {exc}", node) from None
        finally:
            loader.dispose()


def _mapping(src: _Source, node: yaml.MappingNode,
             what: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            raise src.error(f"wrong YAML type: keys in {what} must be names, not "
                            f"{node_kind(key_node)}", key_node)
        name = key_node.value
        if name in out:
            raise src.error(f"duplicate key {name!r} in {what}: each key may appear once",
                            key_node)
        out[name] = (key_node, value_node)
    return out


def _scalar(src: _Source, values: _Values, entry: tuple[yaml.Node, yaml.Node] | None,
            what: str, accepted: str) -> tuple[Any, yaml.Node] | None:
    if entry is None:
        return None
    key_node, node = entry
    if not isinstance(node, yaml.ScalarNode):
        raise src.error(f"wrong YAML type for {what}: got {node_kind(node)}, expected {accepted}",
                        node)
    value = values(node)
    if value is None:
        raise src.error(f"{what}: is empty: expected {accepted}", key_node)
    return value, node


def _text_value(src: _Source, values: _Values, entry: tuple[yaml.Node, yaml.Node] | None,
                what: str) -> str | None:
    got = _scalar(src, values, entry, what, "text")
    if got is None:
        return None
    value, node = got
    if isinstance(value, bool):
        raise src.error(f"wrong YAML type for {what}: got {value!r}, expected text", node)
    return str(value).strip()


def _tempo(src: _Source, values: _Values, entry: tuple[yaml.Node, yaml.Node] | None) -> float:
    accepted = f"a positive number of quarter notes a minute, up to {MAX_TEMPO:g} (tempo: 120)"
    got = _scalar(src, values, entry, "tempo", accepted)
    if got is None:
        return DEFAULT_TEMPO
    value, node = got
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise src.error(f"tempo {node.value!r} is not a number: expected {accepted}", node)
    if not math.isfinite(value) or value <= 0 or value > MAX_TEMPO:
        raise src.error(f"tempo {node.value!r} is out of range: expected {accepted}", node)
    return float(value)


def _time(src: _Source, values: _Values,
          entry: tuple[yaml.Node, yaml.Node] | None) -> tuple[int, int]:
    accepted = ("a time signature like 4/4, 3/4, 6/8 or 5/4 (1-32 beats over "
                f"{', '.join(map(str, DENOMINATORS))})")
    got = _scalar(src, values, entry, "time", accepted)
    if got is None:
        return (4, 4)
    _, node = got
    match = TIME_RE.match(node.value)
    if match is None:
        raise src.error(f"bad time signature {node.value!r}: expected {accepted}", node)
    num, den = int(match.group(1)), int(match.group(2))
    if not 1 <= num <= 32 or den not in DENOMINATORS:
        raise src.error(f"bad time signature {node.value!r}: expected {accepted}", node)
    return (num, den)


def _key(src: _Source, values: _Values, entry: tuple[yaml.Node, yaml.Node] | None) -> str | None:
    accepted = "a note A-G with optional b/# and mode (F, Bb, F#m, C minor, Bb-maj, D dorian)"
    got = _scalar(src, values, entry, "key", accepted)
    if got is None:
        return None
    value, node = got
    text = str(value).strip()
    if isinstance(value, bool) or not KEY_RE.match(text):
        raise src.error(f"bad key {node.value!r}: expected {accepted}", node)
    return text


def _form(src: _Source, node: yaml.Node, sections: dict[str, Any]) -> list[str]:
    known = ", ".join(sections)
    accepted = f"a list of section names, e.g. form: [A, A, B, A] (sections here: {known})"
    items: list[tuple[str, yaml.Node, int | None]] = []
    if isinstance(node, yaml.SequenceNode):
        for item in node.value:
            if not isinstance(item, yaml.ScalarNode):
                raise src.error(f"wrong YAML type in form: got {node_kind(item)}, expected "
                                f"{accepted}", item)
            items.append((item.value.strip(), item, None))
    elif isinstance(node, yaml.ScalarNode) and node.tag.endswith(":str"):
        for match in re.finditer(r"[^\s,]+", node.value):
            items.append((match.group(), node, match.start()))
    else:
        raise src.error(f"wrong YAML type for form: got {node_kind(node)}, expected {accepted}",
                        node)
    if not items:
        raise src.error(f"form is empty: expected {accepted}", node)
    for name, item, offset in items:
        if name not in sections:
            raise src.error(f"unknown section {name!r} in form: sections are {known}",
                            item, offset)
    return [name for name, _, _ in items]


# --------------------------------------------------------------------------- bars

@dataclass(slots=True)
class _Written(Signs):
    """A bar as written in a section, with the repeat signs form.playing_order reads."""
    spans: tuple[ChordSpan, ...] | None      # None: `_`, the chord before holds
    time: tuple[int, int]


def _section_bars(src: _Source, node: yaml.Node, time: tuple[int, int],
                  what: str) -> list[_Written]:
    """The bars of a section in playing order (its repeats and endings taken)."""
    lines: list[yaml.ScalarNode] = []
    if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":str"):
        lines = [node]
    elif isinstance(node, yaml.SequenceNode) and node.value and all(
            isinstance(n, yaml.ScalarNode) and n.tag.endswith(":str") for n in node.value):
        lines = list(node.value)          # type: ignore[arg-type]
    else:
        raise src.error(f"wrong YAML type for {what}: got {node_kind(node)}, expected bars as "
                        f"text like \"| Dm7 G7 | Cmaj7 |\"", node)

    bars: list[_Written] = []
    meter = time
    pending_start = False
    repeats_used = False
    for line in lines:
        positions = src.positions(line)
        current: list[tuple[str, int]] = []
        ending = 0
        last_bar_line: tuple[str, int] | None = None     # the previous bar line token
        tokens = [(m.group(), m.start()) for m in TOKEN_RE.finditer(line.value)]
        for text, offset in tokens + [("|", len(line.value))]:
            if not (text.startswith("|") or text.startswith(":|")):
                if not current and ENDING_RE.match(text):
                    ending = int(text[0])
                    repeats_used = True
                    continue
                if not current and TIME_RE.match(text) and not text.startswith(("/", "%")):
                    meter = _bar_time(src, line, text, offset)
                    continue
                current.append((text, offset))
                continue
            at_end = offset == len(line.value)
            sign = text.startswith(":") or text.endswith(":")
            if current:
                spans = _bar(src, line, current, meter, [b.spans for b in bars], what)
                bars.append(_Written(spans, meter, repeat_start=pending_start, ending=ending))
                pending_start, ending, current = False, 0, []
            elif ending:
                raise src.error(f"ending {ending}. has no bar after it: write it at the start "
                                f"of a bar, e.g. | 1. G7 :| 2. C |", line, offset)
            elif (last_bar_line is not None and not at_end and not sign
                  and not last_bar_line[0].endswith(":") and not last_bar_line[0].startswith(":")
                  and not _line_break_between(src, line, positions, last_bar_line[1], offset)):
                raise src.error(f"empty bar in {what}: {BAR_SYNTAX}", line, offset)
            if text.startswith(":"):
                if not bars:
                    raise src.error(f"repeat end {text!r} has no bar before it in {what}: "
                                    f"{BAR_SYNTAX}", line, offset)
                bars[-1].repeat_end = True
                count = text.rstrip("|").partition("x")[2] if "x" in text else ""
                if count:
                    if not 2 <= int(count) <= 64:
                        raise src.error(f"bad repeat count {text!r}: write :|x2 to :|x64",
                                        line, offset)
                    bars[-1].times = int(count)
                repeats_used = True
            if text.endswith(":"):
                pending_start = True
                repeats_used = True
            last_bar_line = (text, offset)
    if not bars:
        raise src.error(f"{what} has no bars: {BAR_SYNTAX}", node)
    if not repeats_used:
        return bars
    return [bars[k] for k in playing_order(bars)]


def _bar_time(src: _Source, line: yaml.ScalarNode, text: str, offset: int) -> tuple[int, int]:
    match = TIME_RE.match(text)
    num, den = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
    if not 1 <= num <= 32 or den not in DENOMINATORS:
        raise src.error(f"bad time signature {text!r} at the start of a bar: write one like "
                        f"3/4 or 6/8 (1-32 beats over {', '.join(map(str, DENOMINATORS))})",
                        line, offset)
    return (num, den)


def _line_break_between(src: _Source, line: yaml.ScalarNode, positions: dict[int, int],
                        first: int, second: int) -> bool:
    if "\n" in line.value[first:second]:
        return True
    a, b = positions.get(first), positions.get(second)
    return a is not None and b is not None and "\n" in src.text[a:b]


def _bar(src: _Source, line: yaml.ScalarNode, tokens: list[tuple[str, int]],
         time: tuple[int, int], previous: list[tuple[ChordSpan, ...] | None],
         what: str) -> tuple[ChordSpan, ...] | None:
    """One bar's chord spans; None for a rest bar ('_'); '%' repeats the bar before."""
    if tokens[0][0] in ("%", "_"):
        return _repeat_or_rest(src, line, tokens, previous, what)
    items = _bar_items(src, line, tokens)
    num, den = time
    if len(items) > num:
        src.warn(f"{len(items)} chords in a bar of {num} beats ({num}/{den}): "
                 f"{plain(round(num / len(items), 3))} beat each", line, items[0].offset)
    _check_filled(src, line, items, time)
    free_shares = sum(item.shares for item in items if item.beats is None)
    remaining = num - sum(item.beats for item in items if item.beats is not None)
    return _spans(items, _free_sizes(remaining, free_shares), quarters_per_unit(den))


@dataclass(slots=True)
class _BarItem:
    """A chord written in a bar: its beats after ':' (None: a share of the rest)."""

    chord: Chord
    beats: float | None
    offset: int
    text: str
    alternate: Chord | None = None
    shares: int = 1                 # 1 + the '/' written after it


def _repeat_or_rest(src: _Source, line: yaml.ScalarNode, tokens: list[tuple[str, int]],
                    previous: list[tuple[ChordSpan, ...] | None],
                    what: str) -> tuple[ChordSpan, ...] | None:
    sign = tokens[0][0]
    if len(tokens) > 1:
        raise src.error(f"{sign!r} must be alone in its bar, found {tokens[1][0]!r} after "
                        f"it: {BAR_SYNTAX}", line, tokens[1][1])
    if sign == "_":
        return None
    if not previous:
        raise src.error(f"'%' in the first bar of {what} has no previous bar to repeat: "
                        f"write the chord", line, tokens[0][1])
    return previous[-1]


def _is_alternate(text: str) -> bool:
    """An alternate chord in parentheses after its chord: C7 (Gb7)."""
    return text.startswith("(") and text.endswith(")") and len(text) > 2 \
        and text[1] in "ABCDEFGN"


def _bar_items(src: _Source, line: yaml.ScalarNode,
               tokens: list[tuple[str, int]]) -> list[_BarItem]:
    items: list[_BarItem] = []
    for text, offset in tokens:
        if text in ("%", "_"):
            raise src.error(f"{text!r} must be alone in its bar: {BAR_SYNTAX}", line, offset)
        if text == "/":
            _extend_last(src, line, items, offset)
        elif _is_alternate(text):
            _set_alternate(src, line, items, text, offset)
        else:
            items.append(_chord_item(src, line, text, offset))
    if not items:
        raise src.error(f"bar has no chord: {BAR_SYNTAX}", line, tokens[0][1])
    return items


def _extend_last(src: _Source, line: yaml.ScalarNode, items: list[_BarItem],
                 offset: int) -> None:
    """'/' adds a share of the bar to the chord before it."""
    if not items:
        raise src.error(f"'/' at the start of a bar has no chord to extend: "
                        f"{BAR_SYNTAX}", line, offset)
    if items[-1].beats is not None:
        raise src.error(f"'/' after {items[-1].text!r} which has a beat count: use "
                        f"either Chord:beats or '/'", line, offset)
    items[-1].shares += 1


def _set_alternate(src: _Source, line: yaml.ScalarNode, items: list[_BarItem], text: str,
                   offset: int) -> None:
    if not items:
        raise src.error(f"alternate chord {text!r} has no chord before it to stand "
                        f"for: write it after the chord, e.g. C7 (Gb7)", line, offset)
    try:
        items[-1].alternate = parse_chord(text[1:-1])
    except ChordError as exc:
        raise src.error(exc.detail, line, offset + 1) from None


def _chord_item(src: _Source, line: yaml.ScalarNode, text: str, offset: int) -> _BarItem:
    """`Chord` or `Chord:beats`."""
    symbol, colon, count = text.partition(":")
    beats: float | None = None
    if colon:
        beats = _beats(src, line, text, offset + len(symbol) + 1, count)
    try:
        chord = parse_chord(symbol)
    except ChordError as exc:
        raise src.error(exc.detail, line, offset) from None
    if symbol.strip() not in NO_CHORD and symbol.rstrip()[-1:] in STRAY:
        src.warn(f"{symbol!r} ends in stray punctuation {symbol.rstrip()[-1]!r}: read as "
                 f"{symbol.rstrip().rstrip(STRAY)!r}", line, offset)
    return _BarItem(chord, beats, offset, text)


def _check_filled(src: _Source, line: yaml.ScalarNode, items: list[_BarItem],
                  time: tuple[int, int]) -> None:
    """The counted beats fit the bar, leaving room for the chords without a count."""
    num, den = time
    given = sum(item.beats for item in items if item.beats is not None)
    free_shares = sum(item.shares for item in items if item.beats is None)
    remaining = num - given
    if remaining < -1e-9 or (free_shares and remaining <= 1e-9):
        bad = _overflowing(items, num - (1e-9 if free_shares else -1e-9))
        raise src.error(f"beats overflow the bar: {bad.text!r} brings the bar to "
                        f"{plain(given)} of {num} beats in {num}/{den} "
                        f"(counts after ':' must add up to {num}, leaving room for chords "
                        f"without one)", line, bad.offset)
    if not free_shares and abs(remaining) > 1e-9:
        raise src.error(f"bar is short: its beats add up to {plain(given)} but a {num}/{den} "
                        f"bar has {num} (give every beat to a chord, or leave a chord without "
                        f"':' to take the rest)", line, items[-1].offset)


def _overflowing(items: list[_BarItem], limit: float) -> _BarItem:
    """The counted chord that used up the bar (the last chord if none alone did)."""
    running = 0.0
    for item in items:
        running += item.beats or 0
        if item.beats is not None and running >= limit:
            return item
    return items[-1]


def _free_sizes(remaining: float, free_shares: int) -> list[float]:
    """An even split of the free shares: whole beats where possible, the first ones longer."""
    if free_shares and abs(remaining - round(remaining)) < 1e-9 and free_shares <= remaining:
        base, extra = divmod(round(remaining), free_shares)
        return [float(base + (1 if k < extra else 0)) for k in range(free_shares)]
    return [remaining / free_shares] * free_shares if free_shares else []


def _spans(items: list[_BarItem], free_sizes: list[float], unit: float) -> tuple[ChordSpan, ...]:
    spans: list[ChordSpan] = []
    start = 0.0
    k = 0
    for item in items:
        if item.beats is not None:
            length = item.beats
        else:
            length = sum(free_sizes[k:k + item.shares])
            k += item.shares
        spans.append(ChordSpan(item.chord, _clean(start * unit), _clean(length * unit),
                               item.alternate))
        start += length
    return tuple(spans)


def _beats(src: _Source, line: yaml.ScalarNode, token: str, offset: int, count: str) -> float:
    try:
        value = float(count)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0 or not re.fullmatch(r"\d+(\.\d+)?", count):
        raise src.error(f"bad beat count {count!r} in {token!r}: after ':' write a positive "
                        f"number of beats, e.g. C7:3 F7:1", line, offset)
    return value


def _clean(x: float) -> float:
    """Snap float noise to whole beats; keep exact fractions otherwise (spans add up)."""
    r = round(x)
    return float(r) if abs(x - r) < 1e-9 else x


# --------------------------------------------------------------------------- output

def chart_to_json(chart: Chart) -> dict:
    """The `melodyflow check --json` shape: title, tempo, time, and per bar its chord spans."""
    bars = []
    for bar in chart.bars:
        chords = []
        for span in bar.chords:
            c = span.chord
            chords.append({"symbol": c.symbol, "start_beat": json_number(span.start_beat),
                           "beats": json_number(span.beats), "root": c.root, "bass": c.bass,
                           "tones": list(c.tones), "scale": list(c.scale),
                           "pentatonic": list(c.pentatonic)})
            if span.alternate is not None:
                chords[-1]["alternate"] = span.alternate.symbol
        entry: dict[str, Any] = {"index": bar.index, "section": bar.section, "chords": chords}
        if bar.time is not None:
            entry["time"] = list(bar.time)
        if bar.empty:
            entry["empty"] = True
        bars.append(entry)
    return {"title": chart.title, "tempo": json_number(chart.tempo), "time": list(chart.time),
            "key": chart.key, "style": chart.style, "bars": bars}


def _names(chord: Chord, pcs: tuple[int, ...]) -> str:
    return " ".join(note_names(chord, pcs))


def chart_to_text(chart: Chart) -> str:
    """Human `melodyflow check` output: one line a bar, chords with their tones."""
    num, den = chart.time
    head = [f"{chart.title}: {plain(chart.tempo)} bpm, {num}/{den}"]
    if chart.key:
        head.append(f"key {chart.key}")
    if chart.style:
        head.append(f"style {chart.style}")
    head.append(f"{len(chart.bars)} bars")
    lines = [", ".join(head)]
    width = max((len(b.section) for b in chart.bars), default=0)
    for bar in chart.bars:
        parts = []
        for span in bar.chords:
            c = span.chord
            beats = plain(round(span.beats, 3))
            if c.is_no_chord:
                parts.append(f"{c.symbol} ({beats}): no chord, any note")
            else:
                parts.append(f"{c.symbol} ({beats}): {_names(c, c.tones)} | "
                             f"{c.scale_name} {_names(c, c.scale)}")
            if span.alternate is not None:
                parts[-1] += f" (or {span.alternate.symbol})"
        if bar.time is not None:
            parts[0] = f"{bar.time[0]}/{bar.time[1]} {parts[0]}"
        if bar.empty:
            parts[0] = f"_ {parts[0]}"
        section = f"{bar.section:<{width}} " if width else ""
        lines.append(f"{bar.index + 1:>3} {section}" + "  //  ".join(parts))
    return "\n".join(lines) + "\n"
