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


def continue_line(own: tuple[int, ...], others: Sequence[tuple[int, ...]], chord: Chord,
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
        pcs = frozenset(chord.scale) if chord.root is not None else frozenset()
        line += scale_walk(line[-1], next_note, pcs, low, high, MIN_LINE - len(line))
    return tuple(line)
