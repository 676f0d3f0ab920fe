"""Where each instrument's solos sit: the `generation.instrument` setting's pitch ranges.

From the Weimar Jazz Database's transcribed solos (concert pitch, all notes of every solo
of that instrument in the training copy): the 5th and 95th percentile of the pitches, and
the median. `generation.instrument` sets the phrases' range (`low`..`high`) to these, and
keeps the line's pitch trend within CENTRE_SLACK semitones of a centre that arcs around
the median (a model left to itself drifts to the bottom of any range, and stays in a band
narrower than the players'); `any` is where the solos of every instrument together sit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Register:
    low: int            # 5th percentile of the solos' pitches (MIDI)
    high: int           # 95th percentile
    median: int
    solos_notes: int    # how many notes the numbers come from


REGISTERS: dict[str, Register] = {
    "any": Register(53, 77, 65, 182074),
    "tenor": Register(52, 73, 64, 85576),
    "alto": Register(57, 75, 67, 29562),
    "soprano": Register(61, 83, 71, 9937),
    "baritone": Register(48, 65, 57, 3984),
    "clarinet": Register(56, 82, 74, 2629),
    "trumpet": Register(61, 80, 70, 30852),
    "cornet": Register(62, 80, 71, 2664),
    "trombone": Register(53, 70, 62, 5841),
    "guitar": Register(52, 74, 63, 3523),
    "piano": Register(50, 75, 61, 2507),
    "vibes": Register(61, 83, 72, 3458),
}
INSTRUMENTS = tuple(REGISTERS)
CENTRE_SLACK = 1        # semitones the trend's centre may stray from the register's median
# Where the parts of a long chart meet (written side by side, neither sees the other):
# the part before ends, and the part after begins, within SEAM_RANGE semitones of the
# median, so the two meet near each other. SEAM_BEATS: how long before its end a part ends.
SEAM_RANGE = 2
SEAM_BEATS = 2.0
# Arcs: the centre the trend is held near rises and falls around the median, ARC_DEPTH
# semitones either way, once every ARC_BEATS beats from the chart's start (a four-bar
# phrase in 4/4: up in its first half, down in its second; 0 = no arc).
ARC_DEPTH = 4
ARC_BEATS = 16.0


def arc_offset(beat: float) -> int:
    """Semitones the register's centre sits above its median at this beat of the chart."""
    if not ARC_DEPTH:
        return 0
    return round(ARC_DEPTH * math.sin(2 * math.pi * beat / ARC_BEATS))


def pitch_range(instrument: str | None, low: int, high: int
                ) -> tuple[int, int, int | None]:
    """The phrases' (low, high, centre): the instrument's register and median, or
    (low, high, None) when it is None (no pull toward a centre). low..high must be a
    range within 0..127 either way (ValueError)."""
    if not 0 <= low <= high <= 127:
        raise ValueError(f"pitch range {low}..{high} is not within 0..127")
    if instrument is None:
        return low, high, None
    register = REGISTERS[instrument]
    return register.low, register.high, register.median
