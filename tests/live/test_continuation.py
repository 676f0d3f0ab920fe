"""The line goes on when the player outruns a chord's phrase (live/continuation.py)."""

from __future__ import annotations

from melodyflowd.live.continuation import MIN_LINE, continue_line, scale_walk
from melodyflowd.music.theory import parse_chord


def short_cycles(line) -> bool:
    """A run of >= 6 notes repeating with period 2 or 3 (not one repeated pitch)."""
    for period in (2, 3):
        for start in range(len(line) - 5):
            run = line[start:start + 6]
            if len(set(run)) > 1 and all(run[i] == run[i - period] for i in range(period, 6)):
                return True
    return False


def test_the_phrase_comes_first_then_the_other_variations_entered_near_its_last_note():
    f7 = parse_chord("F7")
    line = continue_line((65, 69, 72), [(60, 63, 67, 70), (77, 75, 72)], f7, 69, 55, 84)
    assert line[:3] == (65, 69, 72)
    # 70 is the first line's note nearest 72 (72 itself is not taken), and 72 the second's
    # nearest 70: entered there, each line is followed to its end.
    assert line[3:5] == (70, 72)
    assert len(line) == MIN_LINE


def test_a_three_note_bar_never_cycles_and_walks_the_scale_toward_the_next_chord():
    f7 = parse_chord("F7")
    line = continue_line((55, 55, 58), [], f7, 60, 55, 79)
    assert len(line) == MIN_LINE
    assert not short_cycles(line)
    walk = line[3:]
    assert all(p % 12 in f7.scale for p in walk)
    assert all(0 < abs(b - a) <= 2 for a, b in zip(line[2:], walk, strict=False))
    assert walk[:2] == (60, 62)                 # up from Bb3 to C4, the next chord's note


def test_the_walk_turns_at_the_edges_of_the_register():
    walk = scale_walk(60, None, frozenset(range(12)), 58, 62, 8)
    assert walk == [61, 62, 61, 60, 59, 58, 59, 60]


def test_empty_stays_empty_and_nc_walks_chromatically():
    assert continue_line((), [(60,)], parse_chord("C7"), None, 55, 84) == ()
    line = continue_line((60,), [], parse_chord("NC"), 64, 55, 84)
    assert line[1:5] == (61, 62, 63, 64)
