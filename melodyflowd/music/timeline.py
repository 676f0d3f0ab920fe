"""The chart's chords on one beat axis: the form unrolled once, looping after."""

from __future__ import annotations

import math

from melodyflowd.music.chart import Chart
from melodyflowd.music.theory import Chord


class Timeline:
    """The chart's chords on one beat axis (the form unrolled once, looping after)."""

    def __init__(self, chart: Chart) -> None:
        self.chart = chart
        self.beats_per_bar = chart.beats_per_bar
        self.n_bars = len(chart.bars)
        self.total_beats = self.n_bars * self.beats_per_bar
        spans: list[tuple[float, Chord]] = []
        for bar in chart.bars:
            base = bar.index * self.beats_per_bar
            for span in bar.chords:
                spans.append((base + span.start_beat, span.chord))
        self.span_starts = [s for s, _ in spans]
        self.span_chords = [c for _, c in spans]

    def bar_of(self, t: float) -> int:
        return int(math.floor(t / self.beats_per_bar + 1e-9))

    def span_index(self, t: float) -> int:
        """Index of the chord span sounding at absolute beat t (counting on across loops)."""
        loops, local = divmod(t + 1e-9, self.total_beats)
        lo, hi = 0, len(self.span_starts) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.span_starts[mid] <= local:
                lo = mid
            else:
                hi = mid - 1
        return int(loops) * len(self.span_starts) + lo

    def chord_at(self, t: float) -> Chord:
        return self.span_chords[self.span_index(t) % len(self.span_chords)]
