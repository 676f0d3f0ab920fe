"""The chart's chords on one beat axis: the form unrolled once, looping after."""

from __future__ import annotations

from bisect import bisect_right

from melodyflowd.music.chart import Chart
from melodyflowd.music.meter import bar_at, bar_start
from melodyflowd.music.theory import Chord

# Beats: an onset this close before a bar line is in the bar after it (float noise of waits)
_EDGE = 1e-9


class Timeline:
    """The chart's chords on one beat axis (the form unrolled once, looping after); every
    bar lasts its own meter's length (Chart.bar_starts)."""

    def __init__(self, chart: Chart) -> None:
        self.chart = chart
        self.n_bars = len(chart.bars)
        self.bar_starts = chart.bar_starts
        self.total_beats = chart.form_beats
        spans: list[tuple[float, Chord]] = []
        for bar in chart.bars:
            base = self.bar_starts[bar.index]
            for span in bar.chords:
                spans.append((base + span.start_beat, span.chord))
        self.span_starts = [s for s, _ in spans]
        self.span_chords = [c for _, c in spans]

    def bar_of(self, t: float) -> int:
        """The bar number (since the start, counting on across loops) at absolute beat t."""
        return bar_at(self.bar_starts, t + _EDGE)[0]

    def bar_start(self, bar: int) -> float:
        """The absolute beat where bar number `bar` (counting on across loops) begins."""
        return bar_start(self.bar_starts, bar)

    def in_bar(self, t: float) -> tuple[float, float]:
        """(beats since the start of the bar sounding at absolute beat t, that bar's length)."""
        bar = self.bar_of(t)
        start = self.bar_start(bar)
        return t - start, self.bar_start(bar + 1) - start

    def span_index(self, t: float) -> int:
        """Index of the chord span sounding at absolute beat t (counting on across loops)."""
        loops, local = divmod(t + _EDGE, self.total_beats)
        index = max(0, bisect_right(self.span_starts, local) - 1)
        return int(loops) * len(self.span_starts) + index

    def chord_at(self, t: float) -> Chord:
        return self.span_chords[self.span_index(t) % len(self.span_chords)]
