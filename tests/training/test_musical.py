"""bench/musical.py's pieces: a solo's beat-by-beat chart and rhythm, the metrics."""

from __future__ import annotations

import mido

from bench.musical import Context, cycle_flags, load_cases, metrics, solo_chart, solo_take
from training.prepare import Note, Solo


def test_short_cycles_are_runs_of_six_with_period_two_or_three():
    assert all(cycle_flags([60, 62, 60, 62, 60, 62]))
    assert not any(cycle_flags([60, 62, 60, 62, 60]))                  # five: too short
    assert not any(cycle_flags([60] * 8))                               # repeats, not cycles
    assert cycle_flags([60, 62, 64, 60, 62, 64, 67]) == [True] * 6 + [False]
    assert not any(cycle_flags([60, 62, 64, 65, 67, 69, 71, 72]))


def solo() -> Solo:
    # Two pickup beats, then bar 1: C7 C7 F7 F7, bar 2: G7 x4. 12 ticks a beat.
    notes = [Note(onset=t, duration=6, pitch=p, chord="", downbeat=False)
             for t, p in ((12, 59), (24, 60), (30, 62), (48, 64), (72, 65), (84, 67))]
    return Solo(melid=1, performer="p", title="t", style="jazz", key_root=None,
                key_minor=False, tempo=120.0, lead_sheet="", notes=notes, instrument="ts")


BEATS = [(0, 3, "C7"), (0, 4, "C7"), (1, 1, "C7"), (1, 2, "C7"), (1, 3, "F7"), (1, 4, "F7"),
         (2, 1, "G7"), (2, 2, "G7"), (2, 3, "G7"), (2, 4, "G7")]


def test_a_solo_becomes_a_chart_from_its_first_bar_line_and_a_take_of_its_rhythm():
    chart, first = solo_chart(solo(), BEATS, 8)
    assert first == 2
    assert [[(s.chord.symbol, s.start_beat, s.beats) for s in bar.chords]
            for bar in chart.bars] == [[("C7", 0.0, 2.0), ("F7", 2.0, 2.0)], [("G7", 0.0, 4.0)]]
    take, onsets, pitches = solo_take(solo(), first, 8)
    assert onsets == [0.0, 0.5, 2.0, 4.0, 5.0] and pitches == [60, 62, 64, 65, 67]
    ons = [(m.note, m.velocity) for m in mido.merge_tracks(take.tracks)
           if m.type == "note_on"]
    assert ons == [(p, 80) for p in pitches]


def test_the_humans_own_line_measures_zero_distance_shape(wjazzd_path):
    cases = load_cases(str(wjazzd_path), 2, 4)
    assert len(cases) == 2
    for case in cases:
        assert len(case.chart.bars) == 4
        assert len(case.onsets) == len(case.pitches) >= 16
        assert all(0 <= t < 16 for t in case.onsets)
    m = metrics([c.pitches for c in cases], Context.of(cases))
    assert m["notes"] == sum(len(c.pitches) for c in cases)
    assert 0.3 < m["in_scale"] <= 1.0
