"""The `metrical` scale mode: which pitches a note may take, by where it falls in the bar.

Jazz lines are not "all notes of the chord-scale, anywhere". Where the harmony is heard
(beat 1 and the middle of the bar, and the first note after a chord change) a player
lands on the chord: its tones and its tensions. Between those, the line moves: scale
notes, and chromatic passing and approach tones, which resolve by step. Avoid notes (a
scale note a half step above a chord tone, such as the 4th over a major or dominant
chord) are not landed on.

For the note being written, `metrical_choice` gives the pitch classes the constraint
favours (the rest are pushed down by the soft penalty, or masked with `constraint:
hard`), and, after a note outside the chord-scale, the pitch it must resolve from:

- strong note (onset on beat 1 or the bar's middle beat, or the first note of a new
  chord span): chord tones and tensions (the chord-scale without its avoid notes);
- weak note: the chord-scale, plus the chromatic notes a half step from a chord tone
  (approach and passing tones), without the avoid notes' doubling of that role;
- the note after one outside the chord-scale (of its own chord): the set above, and
  only pitches a half or whole step from it (the resolution), not back to the note
  before it where another step is possible (a passing tone goes on; going back and
  forth would trill: A Bb A Bb over Dm7).

NC: every pitch class. The soft penalty (`generation.penalty`) decides how often the line
leaves the favoured set; bench/musical.py measures where that lands against the humans.
"""

from __future__ import annotations

from functools import lru_cache

from melodyflowd.music.theory import Chord

RULES = 2                   # bump when the rules change: caches of metrical banks key on it
EPS = 1e-6
STEP = 2                    # a resolution moves by at most a whole step


@lru_cache(maxsize=2048)
def avoid_notes(chord: Chord) -> frozenset[int]:
    """Scale notes a half step above a chord tone (not chord tones themselves)."""
    if chord.root is None:
        return frozenset()
    tones = set(chord.tones)
    return frozenset(pc for pc in chord.scale if pc not in tones and (pc - 1) % 12 in tones)


@lru_cache(maxsize=2048)
def strong_pitch_classes(chord: Chord) -> frozenset[int]:
    """Chord tones and tensions: the chord-scale without its avoid notes."""
    if chord.root is None:
        return frozenset(range(12))
    return frozenset(chord.scale) - avoid_notes(chord)


@lru_cache(maxsize=2048)
def weak_pitch_classes(chord: Chord) -> frozenset[int]:
    """The chord-scale and the chromatic notes a half step from a chord tone."""
    if chord.root is None:
        return frozenset(range(12))
    approach = {(t + d) % 12 for t in chord.tones for d in (-1, 1)}
    return frozenset(chord.scale) | frozenset(approach)


def is_strong(onset: float, beats_per_bar: float, new_span: bool) -> bool:
    """Beat 1, the middle of the bar (when the bar has an even number of beats: beat 3 of
    4/4), or the first note of a chord span."""
    if new_span:
        return True
    pos = onset % beats_per_bar
    if pos < EPS or beats_per_bar - pos < EPS:
        return True
    half = beats_per_bar / 2
    return float(half).is_integer() and abs(pos - half) < EPS


def metrical_choice(chord: Chord, onset: float, beats_per_bar: float, new_span: bool,
                    previous: tuple[int, Chord] | None) -> tuple[frozenset[int], int | None]:
    """(favoured pitch classes, pitch to resolve by step from, or None) for a note at
    `onset` (beats) over `chord`; previous = (pitch, chord) of the note before, if any.
    (The note before that, which the resolution should not go back to, is the caller's:
    `resolving(..., back=...)`.)"""
    pcs = strong_pitch_classes(chord) if is_strong(onset, beats_per_bar, new_span) \
        else weak_pitch_classes(chord)
    if previous is not None:
        pitch, before = previous
        if before.root is not None and pitch % 12 not in before.scale:
            return pcs & frozenset(chord.scale) if chord.root is not None else pcs, pitch
    return pcs, None


def resolving(candidates: list[int], source: int, back: int | None = None) -> list[int]:
    """The candidates a half or whole step from `source`, not `back` (the note before the
    source) when another one is; all of them when none is a step away."""
    near = [p for p in candidates if 0 < abs(p - source) <= STEP]
    onward = [p for p in near if p != back]
    return onward or near or candidates
