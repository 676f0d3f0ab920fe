"""A lead sheet read from another format, in playing order, and its YAML chart text.

The importers (ireal.py, musicxml.py) turn what they read into a LeadSheet: the
bars unrolled the way a band plays them (repeats, endings, D.C./D.S. and coda
taken), each with its section, meter and chords. `to_yaml` writes it as a chart
a person can read and edit (docs/charts.md): one line a bar, one YAML section a
run of bars under one rehearsal mark, and a form that lists them in order, so
the second A with its own ending becomes "A2" and a repeated A is named again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from melodyflowd.errors import UserError
from melodyflowd.numbers import plain


class SourceError(UserError):
    """A source (link, playlist, MusicXML) that cannot be read: names the file and what is wrong."""


@dataclass(slots=True)
class SheetChord:
    symbol: str                     # chart notation (theory.parse_chord reads it)
    weight: float = 1.0             # share of the bar, relative to the bar's other chords
    alternate: str | None = None    # a chord written above it, in parentheses


@dataclass(slots=True)
class SheetBar:
    chords: list[SheetChord]        # empty: no new chord, the one before holds (an empty bar)
    time: tuple[int, int]
    section: str                    # rehearsal mark it falls under ("A", "Intro", ...)
    origin: int                     # index of the bar as written, before unrolling
    starts_section: bool = False    # a rehearsal mark starts here
    exact: bool = False             # weights are beats of the meter (the cell layout said so)


@dataclass(slots=True)
class LeadSheet:
    title: str
    bars: list[SheetBar]
    composer: str | None = None
    key: str | None = None
    tempo: float | None = None
    style: str | None = None        # adapter name (see STYLE_ADAPTERS in ireal.py)
    source_style: str | None = None  # the style as the source names it
    notes: list[str] = field(default_factory=list)   # comments for the YAML head

    @property
    def time(self) -> tuple[int, int]:
        """The chart's meter: the most common one (bars in another meter carry a mark)."""
        counts: dict[tuple[int, int], int] = {}
        for bar in self.bars:
            counts[bar.time] = counts.get(bar.time, 0) + 1
        if not counts:
            return (4, 4)
        first = self.bars[0].time
        best = max(counts.values())
        return first if counts[first] == best else max(counts, key=lambda t: counts[t])


# --------------------------------------------------------------------------- YAML

_PLAIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 .,'&()!?-]*$")
_YAML_WORDS = {"yes", "no", "on", "off", "true", "false", "null", "y", "n", "~"}


def _quote(text: str) -> str:
    """A YAML scalar for free text: plain where that reads back the same, else quoted."""
    if (_PLAIN.match(text) and text.lower() not in _YAML_WORDS and ": " not in text
            and " #" not in text and not text.endswith(":")
            and not re.fullmatch(r"[\d.eE+-]+", text)):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def bar_text(bar: SheetBar) -> str:
    """One bar in chart notation, without its bar lines."""
    if not bar.chords:
        return "_"
    weights = [c.weight for c in bar.chords]
    num = bar.time[0]
    parts: list[str] = []
    even = all(abs(w - weights[0]) < 1e-9 for w in weights)
    counted = (not even and bar.exact and all(float(w).is_integer() for w in weights)
               and abs(sum(weights) - num) < 1e-9)
    for chord in bar.chords:
        token = chord.symbol
        if counted:
            token += f":{plain(chord.weight)}"
        parts.append(token)
        if not even and not counted:
            parts.extend(["/"] * max(0, round(chord.weight) - 1))
        if chord.alternate:
            parts.append(f"({chord.alternate})")
    return " ".join(parts)


def _segments(sheet: LeadSheet) -> list[tuple[str, list[SheetBar]]]:
    """Runs of bars: a new run at each rehearsal mark, change of section or jump back (a
    skipped first ending or a jump to the coda does not split a run)."""
    runs: list[tuple[str, list[SheetBar]]] = []
    previous: SheetBar | None = None
    for bar in sheet.bars:
        new = (previous is None or bar.starts_section or bar.section != previous.section
               or bar.origin <= previous.origin)
        if new:
            runs.append((bar.section, [bar]))
        else:
            runs[-1][1].append(bar)
        previous = bar
    return runs


def _section_name(label: str) -> str:
    name = re.sub(r"[^A-Za-z0-9 _-]", "", label).strip() or "A"
    return name


def to_yaml(sheet: LeadSheet) -> str:
    """The chart text: head (title, composer, key, tempo, time, style), sections, form."""
    time = sheet.time
    lines = [f"title: {_quote(sheet.title)}"]
    if sheet.composer:
        lines.append(f"composer: {_quote(sheet.composer)}")
    if sheet.key:
        lines.append(f"key: {sheet.key}")
    if sheet.tempo:
        lines.append(f"tempo: {plain(sheet.tempo)}")
    lines.append(f"time: {time[0]}/{time[1]}")
    if sheet.style:
        comment = f"   # {sheet.source_style}" if sheet.source_style else ""
        lines.append(f"style: {sheet.style}{comment}")
    elif sheet.source_style:
        lines.append(f"# style in the source: {sheet.source_style} (no adapter for it)")
    for note in sheet.notes:
        lines.append(f"# {note}")

    names: dict[str, str] = {}          # bar text of a run -> its section name
    used: dict[str, int] = {}
    sections: list[tuple[str, list[str]]] = []
    form: list[str] = []
    for label, bars in _segments(sheet):
        rows: list[str] = []
        meter = time
        for bar in bars:
            text = bar_text(bar)
            if bar.time != meter:
                text = f"{bar.time[0]}/{bar.time[1]} {text}"
                meter = bar.time
            rows.append(f"| {text} |")
        body = "\n".join(rows)
        base = _section_name(label)
        key = f"{base}\n{body}"
        if key not in names:
            count = used.get(base, 0) + 1
            used[base] = count
            names[key] = base if count == 1 else f"{base}{count}"
            sections.append((names[key], rows))
        form.append(names[key])

    lines.append("sections:")
    for name, rows in sections:
        lines.append(f"  {_quote(name)}: |")
        lines.extend(f"    {row}" for row in rows)
    lines.append("form: [" + ", ".join(_quote(n) for n in form) + "]")
    return "\n".join(lines) + "\n"


def file_stem(title: str) -> str:
    """A file name from a title: lower case, words joined by '-', an article iReal Pro
    moves to the end put back ("Gambler, The" -> the-gambler)."""
    moved = re.fullmatch(r"(.+),\s*(The|A|An)\s*", title, re.IGNORECASE)
    if moved:
        title = f"{moved.group(2)} {moved.group(1)}"
    stem = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    return stem or "untitled"
