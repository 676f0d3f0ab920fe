"""What the constraint knows about each row: where it is in its line, its time, its notes."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from melodyflowd.generate.constraint.numbers import PitchSet, Range


@dataclass(slots=True)
class LineState:
    """Where a row is inside the current line: column, digits of the number being written."""

    col: int = 0                 # column being written; -1 = not a note line (until "\n")
    digits: str = ""
    values: list[int] = field(default_factory=list)

    def reset(self) -> None:
        self.col = 0
        self.digits = ""
        self.values = []


@dataclass(slots=True)
class RowState:
    line: LineState = field(default_factory=LineState)
    time: float = 0.0            # onset (beats from the chart start) of the note being written
    notes: list[tuple[float, tuple[int, ...]]] = field(default_factory=list)
    bar_counts: dict[int, int] = field(default_factory=dict)
    recent: deque = field(default_factory=lambda: deque(maxlen=16))
    done: bool = False           # reached the end time: no more constraint
    end: float | None = None     # the row is done when its time reaches this beat
    seam_start: bool = False     # the row starts where a part before it ends
    seam_end: float | None = None  # from this beat on, the row ends where a part goes on
    pitch_field: PitchSet | None = None   # allowed pitches for the note being written
    wait_field: Range | None = None       # allowed waits for it (both change only per note)
