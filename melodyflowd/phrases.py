"""Phrase, PhraseBank (immutable plain data), JSON read/write with validation, MIDI export.

SKELETON: the dataclasses are the fixed interface; I/O helpers are owned by the engine work.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import UserError

BANK_FORMAT = "melodyflow-bank/1"


class BankError(UserError):
    """A phrase bank file that cannot be used: file, the bad field, what is accepted."""


@dataclass(frozen=True, slots=True)
class PhraseNote:
    pitch: int             # MIDI 0-127
    duration_ms: int
    wait_ms: int           # onset of this note -> onset of the next, as the model wrote it
    velocity: int          # 1-127 (the player's velocity replaces it when played live)
    beat: float            # onset in beats from the start of its bar
    chord: str             # symbol of the chord sounding at the onset


@dataclass(frozen=True, slots=True)
class BarPhrase:
    bar: int                          # index into PhraseBank.bars
    notes: tuple[PhraseNote, ...]

    def notes_for_chord(self, symbol: str, start_beat: float) -> tuple[PhraseNote, ...]:
        """The notes written for the chord span starting at start_beat (by `chord` and beat)."""
        picked = tuple(n for n in self.notes if n.chord == symbol and n.beat >= start_beat - 1e-6)
        return picked or self.notes


@dataclass(frozen=True, slots=True)
class BankChord:
    symbol: str
    start_beat: float
    beats: float


@dataclass(frozen=True, slots=True)
class BankBar:
    index: int
    chords: tuple[BankChord, ...]


@dataclass(frozen=True, slots=True)
class PhraseBank:
    title: str
    tempo: float
    time: tuple[int, int]
    bars: tuple[BankBar, ...]                       # form unrolled once, playing order
    variations: tuple[tuple[BarPhrase, ...], ...]   # [variation][bar]
    model: str = "default"
    adapter: str | None = None
    seed: int | None = None
    settings: dict = field(default_factory=dict)

    @property
    def n_variations(self) -> int:
        return len(self.variations)
