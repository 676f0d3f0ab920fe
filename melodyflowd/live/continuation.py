"""When the player plays more notes than a chord's phrase has, the line goes on.

The engine plays the k-th key in a chord span as note k of that span's tuple. The bank
writes a few notes a chord (often 2-8); a player running sixteenths outruns them, and
wrapping around to the first note again makes short cycles (G3 G3 Bb3 G3 G3 Bb3 ...). So
each span's tuple is extended, when the program is built (never in the callback), by:

1. the other variations' lines over the same chord span: each entered at its note
   nearest the line's last note (a step away where it can, never the same pitch) and
   followed to its end. More of the same harmony, from the same model;
2. then a walk along the chord-scale from the last note toward the first note of the
   next chord span (the line leads into the change), turning at it and at the register's
   edges, until the tuple holds MIN_LINE notes.

Only then would it wrap: past MIN_LINE notes in one chord span (two bars of eighths at
MIN_LINE = 32). A player who plays fewer notes hears the phrase's first notes, which land
on the chord (the generation constraint puts chord tones where the chord starts).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from melodyflowd.music.chart import Chart
    from melodyflowd.music.theory import Chord

MIN_LINE = 32


def _entry(line_end: int, other: Sequence[int]) -> int:
    """Index of the note of `other` to enter at: nearest to line_end, not equal to it."""
    return min(range(len(other)),
               key=lambda i: (other[i] == line_end, abs(other[i] - line_end), i))


def scale_walk(start: int, target: int | None, pcs: frozenset[int], low: int, high: int,
               count: int) -> list[int]:
    """`count` pitches stepping along `pcs` from `start` toward `target`, turning at the
    target and at low..high (all 12 pitch classes when pcs is empty)."""
    steps = sorted(p for p in range(max(0, low), min(127, high) + 1)
                   if not pcs or p % 12 in pcs)
    if len(steps) < 2:
        return [start] * count
    direction = 1 if target is None or target >= start else -1
    here = start
    out: list[int] = []
    for _ in range(count):
        ahead = [p for p in steps if (p - here) * direction > 0]
        if not ahead or (target is not None and here == target):
            direction = -direction
            ahead = [p for p in steps if (p - here) * direction > 0] or steps
        here = min(ahead, key=lambda p: abs(p - here))
        out.append(here)
        if target is not None and (here - target) * direction >= 0:
            target = None          # reached the next chord's note: walk on, turn at edges
    return out


def continue_line(own: tuple[int, ...], others: Sequence[tuple[int, ...]], chord: Chord | None,
                  next_note: int | None, low: int, high: int) -> tuple[int, ...]:
    """`own` followed by the other variations' lines over the same span and a scale walk
    toward `next_note`, MIN_LINE notes long (see the module doc). Empty stays empty."""
    if not own:
        return own
    line = list(own)
    for other in others:
        if len(line) >= MIN_LINE:
            break
        if other:
            line += other[_entry(line[-1], other):]
    if len(line) < MIN_LINE:
        pcs = frozenset(chord.scale) if chord is not None and chord.root is not None \
            else frozenset()
        line += scale_walk(line[-1], next_note, pcs, low, high, MIN_LINE - len(line))
    return tuple(line)


Phrases = tuple[tuple[tuple[tuple[int, ...], ...], ...], ...]     # [variation][bar][span]


def continue_lines(phrases: Phrases, arpeggio: tuple[tuple[tuple[bool, ...], ...], ...],
                   chart: Chart) -> Phrases:
    """Every span's phrase of every variation, continued (continue_line): the other
    variations' phrases of the same span in order v+1, v+2, ..., then the walk toward the
    next span's first note, within the lowest..highest pitch of the bank. Arpeggio spans
    (the engine's fallback for a chord with no notes) stay as they are."""
    pitches = [p for var in phrases for bar in var for span in bar for p in span]
    if not pitches:
        return phrases
    low, high = min(pitches), max(pitches)
    n_var = len(phrases)
    n_bars = len(chart.bars)
    out = []
    for v in range(n_var):
        bars = []
        for b, row in enumerate(phrases[v]):
            chords = chart.bars[b].chords
            spans = []
            for s, own in enumerate(row):
                if arpeggio[v][b][s]:
                    spans.append(own)
                    continue
                others = [phrases[(v + k) % n_var][b][s] for k in range(1, n_var)
                          if not arpeggio[(v + k) % n_var][b][s]]
                nb, ns = (b, s + 1) if s + 1 < len(row) else ((b + 1) % n_bars, 0)
                following = phrases[v][nb][ns]
                chord = chords[min(s, len(chords) - 1)].chord if chords else None
                spans.append(continue_line(own, others, chord,
                                           following[0] if following else None, low, high))
            bars.append(tuple(spans))
        out.append(tuple(bars))
    return tuple(out)
