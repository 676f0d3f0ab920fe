"""Bar lengths: melodyflowd counts time in quarter-note beats, whatever the time signature."""

from __future__ import annotations


def quarters_per_unit(denominator: int) -> float:
    """Quarter notes in one beat unit of a time signature (8 -> 0.5, 2 -> 2.0)."""
    return 4 / denominator


def bar_beats(time: tuple[int, int] | list[int]) -> float:
    """Length of a bar of a [beats, unit] time signature in quarter-note beats
    (6/8 -> 3.0)."""
    numerator, denominator = time
    return numerator * quarters_per_unit(denominator)
