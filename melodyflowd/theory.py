"""Chord symbols -> Chord(root, bass, tones, scale, pentatonic). Pure, no I/O.

SKELETON: interface fixed, implementation owned by the theory/chart work.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UserError


class ChordError(UserError):
    """A chord symbol that cannot be read; message names the symbol and what is accepted."""


@dataclass(frozen=True, slots=True)
class Chord:
    symbol: str                    # as written in the chart
    root: int | None               # pitch class 0-11, C = 0; None for NC
    bass: int | None               # pitch class of the bass (slash chords), else == root
    tones: tuple[int, ...]         # chord tones as pitch classes, root first, in stacking order
    scale: tuple[int, ...]         # chord-scale pitch classes starting at the root (7 or 8)
    pentatonic: tuple[int, ...]    # the 5-note subset the original Melody Flow used
    scale_name: str = ""           # e.g. "dorian", "altered"; "" for NC

    @property
    def is_no_chord(self) -> bool:
        return self.root is None


def parse_chord(symbol: str) -> Chord:
    """Parse a chord symbol in standard, iReal Pro or WJazzD notation. Raises ChordError."""
    raise NotImplementedError


def pitch_classes(chord: Chord, mode: str) -> tuple[int, ...]:
    """Allowed pitch classes for a scale mode: chord-scale | pentatonic | chord-tones | chromatic.

    For NC every mode yields all 12 pitch classes.
    """
    raise NotImplementedError
