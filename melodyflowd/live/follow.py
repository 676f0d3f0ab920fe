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

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from melodyflowd.music.chart import Chart
from melodyflowd.music.follow import follow_lines, is_follow_chart, scale_key
from melodyflowd.music.phrases import PhraseBank
from melodyflowd.music.recognize import NO_CONTEXT, RecognitionTable, context_index
from melodyflowd.music.theory import SCALES, Chord, parse_chord

_BIT = tuple(1 << (n % 12) for n in range(128))   # note -> its pitch class's bit
_PC = tuple(n % 12 for n in range(129))
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
    """A chord no scale of the bank fits still sounds: its tones around the centre."""
    tones = set(chord.tones) or set(range(12))
    up = tuple(p for p in range(centre - 6, centre + 7) if p % 12 in tones)
    return (up, tuple(reversed(up)))


def _snap(pitch: int, tones: frozenset[int], new: frozenset[int]) -> int:
    """The scale tone nearest to `pitch`; on a tie the one of `new` (the tones the other
    scale lacks: Bb over lydian F becomes B, not A), else the one below."""
    for step in range(7):
        below, above = (pitch - step) % 12 in tones, (pitch + step) % 12 in tones
        if below and above and (pitch + step) % 12 in new and (pitch - step) % 12 not in new:
            return pitch + step
        if below:
            return pitch - step
        if above:
            return pitch + step
    return pitch


def _borrowed_lines(root: int, scale_name: str,
                    by_key: dict[int, tuple[tuple[int, ...], ...]]
                    ) -> tuple[tuple[int, ...], ...] | None:
    """Lines for a scale the bank has none for (yet): those of the written scale on the
    same root that shares most tones with it, each note moved to the nearest tone of this
    scale (lydian plays ionian's lines with the 4th raised). None: no scale on this root."""
    want = frozenset((root + i) % 12 for i in SCALES[scale_name])
    best = None
    for name, steps in SCALES.items():
        lines = by_key.get(scale_key(root, name))
        if lines:
            tones = frozenset((root + i) % 12 for i in steps)
            if best is None or len(want & tones) > len(want & best[1]):
                best = (lines, tones)
    if best is None:
        return None
    new = want - best[1]
    return tuple(tuple(_snap(p, want, new) for p in line) for line in best[0])


def _above(lines: tuple[tuple[int, ...], ...], floor: int | None
           ) -> tuple[tuple[int, ...], ...]:
    """Each line moved up by octaves until its lowest note is at or above `floor` (the
    split: the right hand's lines sit above the left hand's chord keys)."""
    if floor is None:
        return lines
    out = []
    for line in lines:
        low = min(line)
        shift = 12 * max(0, -(-(floor - low) // 12))
        out.append(tuple(min(127, p + shift) for p in line) if shift else line)
    return tuple(out)


@functools.lru_cache(maxsize=4)
def _recognition_table(key: str | None) -> RecognitionTable:
    """One table a key, shared (it never changes once built)."""
    return RecognitionTable(key)


def build_follow(bank: PhraseBank, chart: Chart, key: str | None = None, *,
                 more: Sequence[tuple[PhraseBank, Chart]] = (),
                 floor: int | None = None) -> FollowProgram:
    """The follow tables from a bank written over music.follow.follow_chart() (`chart`)
    and the banks of `more` follow charts (follow_charts(): the later scales), for a key
    (a chart's key text, or None). A scale none of them has lines for plays the nearest
    written one's (_borrowed_lines). `floor`: the lowest note a line starts from (the
    split point when the chords come from the keyboard; see line_floor)."""
    by_key = follow_lines(bank, chart)
    for other_bank, other_chart in more:
        for k, lines in follow_lines(other_bank, other_chart).items():
            by_key[k] = by_key.get(k, ()) + lines
    by_key = {k: _above(lines, floor) for k, lines in by_key.items()}
    pitches = sorted(p for lines in by_key.values() for line in lines for p in line)
    centre = pitches[len(pitches) // 2] if pitches else DEFAULT_CENTRE
    recognition = _recognition_table(key)
    chords = list(recognition.chords)
    default = len(chords)
    chords.append(parse_chord(DEFAULT_CHORD))
    made: dict[int, ChordLines] = {}
    lines = []
    keys = []
    for chord in chords:
        k = scale_key(chord.root, chord.scale_name)
        if k not in made:
            own = by_key.get(k) or _borrowed_lines(chord.root, chord.scale_name, by_key) \
                or _tone_lines(chord, centre)
            made[k] = chord_lines(k, own)
        lines.append(made[k])
        keys.append(k)
    return FollowProgram(recognition=recognition, codes=recognition.table,
                         chords=tuple(chords),
                         context=tuple(context_index(c) for c in chords),
                         lines=tuple(lines), keys=tuple(keys), default=default,
                         centre=centre)


def chart_key(chord: Chord | None) -> int:
    """A chart's chord as the scale key the played chord is compared with (-1: NC)."""
    if chord is None or chord.root is None:
        return -1
    return scale_key(chord.root, chord.scale_name)


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


class Follower:
    """Follow mode's state in the engine: the chord keys held, the chord they name, and
    the line being played over it. Sans-I/O; every method runs in the MIDI callback and
    does a few lookups (recognition is one dict lookup and one tuple index).

    - `chord_down(note)` / `chord_up(note)`: a chord key (below the split, or on the chord
      channel) goes down / up. Only a key going down names a new chord: releasing keys
      one by one would otherwise name every subset on the way (a released chord holds).
      The keys of one chord arrive one at a time: the chord before the first of them is
      the context for all of them (not the partial chord the first few named).
    - `bass_down(note)` / `bass_up(note)`: the bass channel's note is the chord's lowest.
    - `leads(chart_key, span_end, beat)`: with a chart, whether the played chord decides
      the next note (True) or the chart does. The played chord wins when it differs from
      the chart's, until the chart and the hands agree, or until the chart's chord span
      in which it took over ends with no chord key held.
    - `next_pitch(last)`: the next note of the line over the current chord; a new chord
      (another scale) joins its lines at the note nearest to `last`; at a line's end the
      next line is joined the same way.
    """

    __slots__ = ("program", "offered", "chord", "held", "bass", "line", "pos", "line_key",
                 "fresh", "override", "until", "changes", "gesture")

    def __init__(self, program: FollowProgram | None = None) -> None:
        self.program = program
        self.offered = program
        self.chord = program.default if program is not None else -1
        self.held: dict[int, int] = {}       # chord key note -> how many keys hold it
        self.bass = -1                       # bass channel note held, -1 none
        self.line: tuple[int, ...] = ()
        self.pos = 0
        self.line_key = -1                   # scale key of the lines `line` is from
        self.fresh = False                   # a chord was played since leads() last looked
        self.override = False                # the played chord wins over the chart's
        self.until = 0.0                     # ... up to this beat when no key is held
        self.changes = 0                     # chords recognized (a counter for the stats)
        self.gesture = NO_CONTEXT            # context of the chord being put down

    @property
    def current(self) -> Chord | None:
        """The chord played over (the default one before any is held); None without
        tables."""
        program = self.program
        if program is None:
            offered = self.offered
            return offered.chords[offered.default] if offered is not None else None
        return program.chords[self.chord] if self.chord >= 0 else None

    def offer(self, program: FollowProgram) -> None:
        """A new program (another bank or key), from any thread: installed at the next
        chord key or note."""
        self.offered = program

    def _install(self) -> None:
        old, program = self.program, self.offered
        self.program = program
        if program is None:
            return
        chord = old.chords[self.chord] if old is not None and self.chord >= 0 else None
        index = chord_index(program, chord)
        self.chord = index if index >= 0 else program.default
        self.line_key = -1
        if self.held:
            self._recognize()

    def chord_down(self, note: int) -> None:
        held = self.held
        if self.offered is not self.program:
            self._install()
        program = self.program
        if not held:                         # the first key of a new chord
            self.gesture = program.context[self.chord] \
                if program is not None and self.chord >= 0 else NO_CONTEXT
        held[note] = held.get(note, 0) + 1
        self._recognize()

    def chord_up(self, note: int) -> None:
        held = self.held
        count = held.get(note, 0) - 1
        if count > 0:
            held[note] = count
        else:
            held.pop(note, None)

    def bass_down(self, note: int) -> None:
        self.bass = note
        if self.held:
            program = self.program
            self.gesture = program.context[self.chord] \
                if program is not None and self.chord >= 0 else NO_CONTEXT
            self._recognize()

    def bass_up(self, note: int) -> None:
        if note == self.bass:
            self.bass = -1

    def _recognize(self) -> None:
        program = self.program
        if program is None:
            return
        mask = 0
        lowest = 128
        for note in self.held:
            mask |= _BIT[note]
            if note < lowest:
                lowest = note
        bass = self.bass
        if bass >= 0:
            mask |= _BIT[bass]
            lowest = bass
        row = program.codes.get(_PC[lowest] << 12 | mask)
        if row is None:
            return
        chord = row[self.gesture]
        if chord >= 0:
            if chord != self.chord:
                self.changes += 1
            self.chord = chord
            self.fresh = True

    def leads(self, chart_key: int, span_end: float, beat: float) -> bool:
        """With a chart: does the played chord decide this note? (see the class doc)"""
        if self.fresh:
            self.fresh = False
            program = self.program
            played = program.keys[self.chord] if program is not None and self.chord >= 0 \
                else -1
            self.override = played >= 0 and played != chart_key
            self.until = span_end
        elif self.override:
            program = self.program
            if program.keys[self.chord] == chart_key or (beat >= self.until
                                                         and not self.held):
                self.override = False
        if not self.override:
            self.line_key = -1               # the chart plays: rejoin when we take over
        return self.override

    def next_pitch(self, last: int) -> int:
        """The next note over the current chord (see the class doc); `last` is the last
        pitch sent (-1: none yet)."""
        if self.offered is not self.program:
            self._install()
        program = self.program
        lines = program.lines[self.chord if self.chord >= 0 else program.default]
        line = self.line
        pos = self.pos
        if pos < len(line) and lines.scale_key == self.line_key:    # the common case
            self.pos = pos + 1
            return line[pos]
        if lines.scale_key != self.line_key:
            which, pos = lines.enter[last][:2] if last >= 0 else lines.first
            line = lines.lines[which]
            self.line_key = lines.scale_key
        elif pos >= len(line):
            entry = lines.enter[last if last >= 0 else program.centre]
            which, pos = (entry[2], entry[3]) if lines.lines[entry[0]] is line \
                else (entry[0], entry[1])
            line = lines.lines[which]
        self.line = line
        self.pos = pos + 1
        return line[pos]

    def reset(self) -> None:
        """Forget the held keys (panic, All Notes Off): the chord itself holds."""
        self.held.clear()
        self.bass = -1




FOLLOW_SPLIT = 60        # follow mode without a split or chord channel: the left hand is
                         # the keys below middle C
NONE, CHORD, BASS = 0, 1, 2


def effective_split(settings) -> int | None:
    """The split point the engine uses: follow mode needs one when the chords come from
    the keyboard and none was set."""
    if settings.follow and settings.split is None and settings.chord_channel is None:
        return FOLLOW_SPLIT
    return settings.split


def line_floor(settings) -> int | None:
    """Where follow lines start (build_follow's floor): above the split when the chords
    come from the keyboard; anywhere when they come from a channel of their own."""
    if settings.chord_channel is not None:
        return None
    return effective_split(settings)


def roles(settings) -> tuple[int, ...]:
    """[channel * 128 + note] -> NONE, CHORD (a key that names the chord) or BASS."""
    if not getattr(settings, "follow", False):
        return (NONE,) * 2048
    channels = set(settings.channels) if settings.channels else set(range(16))
    split = effective_split(settings)
    out = []
    for key in range(2048):
        channel, note = key >> 7, key & 127
        if settings.bass_channel is not None and channel == settings.bass_channel:
            out.append(BASS)
        elif settings.chord_channel is not None:
            out.append(CHORD if channel == settings.chord_channel else NONE)
        else:
            out.append(CHORD if channel in channels and split is not None and note < split
                       else NONE)
    return tuple(out)


__all__ = ["BASS", "CHORD", "NONE", "NO_CONTEXT", "ChordLines", "FollowProgram", "Follower",
           "build_follow", "chart_key", "chord_index", "chord_lines", "effective_split",
           "is_follow_chart", "line_floor", "roles"]
