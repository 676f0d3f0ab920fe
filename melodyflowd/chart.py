"""YAML chord chart -> Chart. Pure parsing (load_chart reads the file); every error names file:line.

SKELETON: interface fixed, implementation owned by the theory/chart work.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UserError
from .theory import Chord


class ChartError(UserError):
    """A chart that cannot be read: file:line:column, the bad token, what is accepted."""


@dataclass(frozen=True, slots=True)
class ChordSpan:
    chord: Chord
    start_beat: float      # from the start of the bar
    beats: float


@dataclass(frozen=True, slots=True)
class Bar:
    index: int             # position in the form unrolled once, 0-based
    section: str           # section name ("A"), or "" for the `chords:` shorthand
    chords: tuple[ChordSpan, ...]

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

    @property
    def beats_per_bar(self) -> float:
        """Length of a bar in quarter-note beats (6/8 -> 3.0)."""
        num, den = self.time
        return num * 4 / den

    def bar_at(self, bar_number: int) -> Bar:
        """Bar for an absolute bar count since the start; the form loops."""
        return self.bars[bar_number % len(self.bars)]

    def chord_at(self, bar_number: int, beat: float) -> Chord:
        return self.bar_at(bar_number).chord_at(beat)


def parse_chart(text: str, filename: str = "<chart>") -> Chart:
    """Parse chart YAML text. Raises ChartError naming filename:line:column."""
    raise NotImplementedError


def load_chart(path: str) -> Chart:
    """Read and parse a chart file. Missing/unreadable file -> ChartError."""
    raise NotImplementedError


def chart_to_json(chart: Chart) -> dict:
    """The `melodyflow check --json` shape (see issue 2)."""
    raise NotImplementedError


def chart_to_text(chart: Chart) -> str:
    """Human `melodyflow check` output: one line a bar, chords with their tones."""
    raise NotImplementedError
