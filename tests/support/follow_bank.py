"""A follow bank as plain data (no model): lines that climb each chord's own scale.

For tests that need a bank over music.follow.follow_chart() quickly; the model writes the
real one (tests/service and bench/follow.py run it). Variation v's line over a chord
starts on the scale note nearest 60 + 4 v and climbs 8 scale notes.
"""

from __future__ import annotations

from functools import lru_cache

from melodyflowd.music.chart import Chart
from melodyflowd.music.follow import follow_chart
from melodyflowd.music.phrases import BarPhrase, PhraseBank, PhraseNote, bank_bars


def scale_line(scale: tuple[int, ...], start: int, length: int = 8) -> tuple[int, ...]:
    pitches = [p for p in range(start, 128) if p % 12 in scale]
    return tuple(pitches[:length])


@lru_cache(maxsize=8)
def make_follow_bank(variations: int = 3, scales: tuple[str, ...] | None = None
                     ) -> tuple[PhraseBank, Chart]:
    """The bank over follow_chart(scales=scales) (None: every scale)."""
    chart = follow_chart(scales=scales)
    rows = []
    for v in range(variations):
        bars = []
        for b, bar in enumerate(chart.bars):
            chord = bar.chords[0].chord
            line = scale_line(chord.scale, 60 + 4 * v)
            bars.append(BarPhrase(b, tuple(PhraseNote(p, 200, 250, 80, i * 0.5, chord.symbol)
                                           for i, p in enumerate(line))))
        rows.append(tuple(bars))
    bank = PhraseBank(chart.title, chart.tempo, chart.time, bank_bars(chart), tuple(rows))
    return bank, chart
