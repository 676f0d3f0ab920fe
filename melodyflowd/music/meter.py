"""Bar lengths and bar positions: melodyflowd counts time in quarter-note beats, whatever
the time signature.

A 6/8 bar is 3.0 beats and a 5/8 bar 2.5. A form's bars lie end to end on one beat axis:
`bar_starts` gives the beat where each bar starts (prefix sums of their lengths) and,
last, the form's length. The form loops: bar n of the song is bar n % len(bars) of the
form, and the song's beats run on across repeats of the form.

Bar lengths are dyadic fractions (the unit is a power of two), so every start is an exact
float and `bar_at` gives the same bar a plain `beat // length` gives when the meter never
changes.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence


def quarters_per_unit(denominator: int) -> float:
    """Quarter notes in one beat unit of a time signature (8 -> 0.5, 2 -> 2.0)."""
    return 4 / denominator


def bar_beats(time: tuple[int, int] | list[int]) -> float:
    """Length of a bar of a [beats, unit] time signature in quarter-note beats
    (6/8 -> 3.0)."""
    numerator, denominator = time
    return numerator * quarters_per_unit(denominator)


def bar_starts(lengths: Iterable[float]) -> tuple[float, ...]:
    """The start beat of every bar of a form, from 0.0, and then the form's length."""
    starts = [0.0]
    for length in lengths:
        starts.append(starts[-1] + float(length))
    return tuple(starts)


def bar_at(starts: Sequence[float], beat: float) -> tuple[int, float]:
    """(bar number since the song's start, the beat it starts on) for absolute `beat`, on a
    form whose bars start at `starts` (as bar_starts gives them); the form loops."""
    n = len(starts) - 1
    form = starts[-1]
    rep = beat // form
    local = beat - rep * form
    bar = bisect_right(starts, local) - 1
    if bar >= n:                  # float rounding just below a repeat of the form
        bar = n - 1
    return int(rep) * n + bar, rep * form + starts[bar]


def bar_start(starts: Sequence[float], bar: int) -> float:
    """The absolute beat where bar number `bar` since the song's start begins."""
    n = len(starts) - 1
    rep, index = divmod(bar, n)
    return rep * starts[-1] + starts[index]
