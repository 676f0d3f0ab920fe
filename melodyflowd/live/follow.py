"""Follow mode's tables: held chord keys -> chord -> the lines to play over it.

Built once a follow bank is offered (`build_follow`, in the caller's thread, about a
second), so that the MIDI callback only looks things up:

- `codes[held_key][context]` -> chord index (recognize.RecognitionTable): the chord the
  held keys name, given the chord before;
- `context[chord]` -> that chord's context index, for the next recognition;
- `lines[chord]` -> ChordLines: the lines the model wrote over the chord's scale, and
  `enter[last pitch]`: where to join them with the smallest leap from the last note.

Pure data and functions; nothing here imports torch or does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from melodyflowd.music.chart import Chart
from melodyflowd.music.follow import follow_lines, scale_key
from melodyflowd.music.phrases import PhraseBank
from melodyflowd.music.recognize import NO_CONTEXT, RecognitionTable, context_index
from melodyflowd.music.theory import Chord, parse_chord

REPEAT_COST = 2.5        # joining on the very pitch just played counts as a minor third
TAIL = 3                 # a line is entered no later than this many notes from its end
DEFAULT_CHORD = "Cmaj7"  # what the right hand plays over before any chord is held
DEFAULT_CENTRE = 67


@dataclass(frozen=True, slots=True)
class ChordLines:
    """The lines for one chord-scale. enter[last] = (line, position, other line, its
    position): the best place to join from the last pitch played, and the best in a
    different line (taken when the line that just ended would be the best)."""

    scale_key: int
    lines: tuple[tuple[int, ...], ...]
    enter: tuple[tuple[int, int, int, int], ...]      # [last pitch 0-127]
    first: tuple[int, int]                            # (line, position) with no last note


@dataclass(frozen=True, slots=True)
class FollowProgram:
    recognition: RecognitionTable
    codes: dict[int, tuple[int, ...]]      # recognition.table
    chords: tuple[Chord, ...]              # recognition.chords (+ the default chord)
    context: tuple[int, ...]               # [chord] -> context index
    lines: tuple[ChordLines, ...]          # [chord]
    keys: tuple[int, ...]                  # [chord] -> scale_key
    default: int                           # chord index played before any is held
    centre: int


def _cost(pitch: int, last: int) -> float:
    leap = abs(pitch - last)
    return REPEAT_COST if leap == 0 else float(leap)


def chord_lines(key: int, lines: tuple[tuple[int, ...], ...]) -> ChordLines:
    """The join table for a chord's lines (see ChordLines)."""
    entries = [(li, pos) for li, line in enumerate(lines)
               for pos in range(max(1, len(line) - TAIL + 1))]
    enter = []
    for last in range(128):
        costs = [(_cost(lines[li][pos], last), pos, li) for li, pos in entries]
        _, pos, line = min(costs)
        others = [c for c in costs if c[2] != line]
        _, other_pos, other = min(others) if others else (0.0, pos, line)
        enter.append((line, pos, other, other_pos))
    centre = sorted(p for line in lines for p in line)[sum(map(len, lines)) // 2]
    first = enter[centre][:2]
    return ChordLines(key, lines, tuple(enter), first)


def _tone_lines(chord: Chord, centre: int) -> tuple[tuple[int, ...], ...]:
    """A chord the bank has no lines for still sounds: its tones around the centre."""
    tones = set(chord.tones) or set(range(12))
    up = tuple(p for p in range(centre - 6, centre + 7) if p % 12 in tones)
    return (up, tuple(reversed(up)))


def build_follow(bank: PhraseBank, chart: Chart, key: str | None = None) -> FollowProgram:
    """The follow tables from a bank written over music.follow.follow_chart() (`chart`),
    for a key (a chart's key text, or None)."""
    by_key = follow_lines(bank, chart)
    pitches = sorted(p for lines in by_key.values() for line in lines for p in line)
    centre = pitches[len(pitches) // 2] if pitches else DEFAULT_CENTRE
    recognition = RecognitionTable(key)
    chords = list(recognition.chords)
    default = len(chords)
    chords.append(parse_chord(DEFAULT_CHORD))
    made: dict[int, ChordLines] = {}
    lines = []
    keys = []
    for chord in chords:
        k = scale_key(chord.root, chord.scale_name)
        if k not in made:
            own = by_key.get(k) or _tone_lines(chord, centre)
            made[k] = chord_lines(k, own)
        lines.append(made[k])
        keys.append(k)
    return FollowProgram(recognition=recognition, codes=recognition.table,
                         chords=tuple(chords),
                         context=tuple(context_index(c) for c in chords),
                         lines=tuple(lines), keys=tuple(keys), default=default,
                         centre=centre)


def chord_index(program: FollowProgram, chord: Chord | None) -> int:
    """The index of a chord (from a chart) in the program, by its scale: the recognized
    chord with the same root and scale, else -1."""
    if chord is None or chord.root is None:
        return -1
    k = scale_key(chord.root, chord.scale_name)
    try:
        return program.keys.index(k)
    except ValueError:
        return -1


__all__ = ["NO_CONTEXT", "ChordLines", "FollowProgram", "build_follow", "chord_index",
           "chord_lines"]
