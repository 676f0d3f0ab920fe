"""A chart that changes meter, live: a 2/4 and a 3/4 bar inside 4/4 last two and three
beats in the engine (fast and reference path), the transport's bar count, Song Position
Pointer and MIDI clock, and a bank swap waits for the right bar line."""

from __future__ import annotations

import pytest

from melodyflowd.live.engine import Engine, build_program, locate
from melodyflowd.live.transport import CLOCK, CONTINUE, SONG_POSITION, START, Transport
from melodyflowd.music.chart import Chart, parse_chart
from melodyflowd.music.phrases import BarPhrase, PhraseBank, PhraseNote, bank_bars
from melodyflowd.settings import EngineSettings
from tests.live.test_engine_fast import SlowEngine

CHART = """\
title: Meters
tempo: 120
time: 4/4
chords: "| C7 | 2/4 F7 | 3/4 G7 Ab7:1 | 4/4 A7 |"
"""
# One pitch a chord, so the note played names the chord sounding.
PITCH = {"C7": 60, "F7": 65, "G7": 67, "Ab7": 68, "A7": 69}
BEAT = 0.5                      # seconds a beat at 120 bpm
# Written out by hand: (first beat, last beat + 1, chord) through the form once.
SPANS = [(0, 4, "C7"), (4, 6, "F7"), (6, 8, "G7"), (8, 9, "Ab7"), (9, 13, "A7")]
FORM = 13


def chart() -> Chart:
    return parse_chart(CHART, "meters.yaml")


def bank(c: Chart, shift: int = 0) -> PhraseBank:
    phrases = tuple(
        BarPhrase(bar.index, tuple(PhraseNote(PITCH[span.chord.symbol] + shift, 100, 100, 90,
                                              span.start_beat, span.chord.symbol)
                                   for span in bar.chords))
        for bar in c.bars)
    return PhraseBank(c.title, c.tempo, c.time, bank_bars(c), (phrases,))


def span_at(beat: float) -> tuple[int, str]:
    """(which span since the start, its chord) at `beat`, from SPANS."""
    rep, local = divmod(beat, FORM)
    k = next(k for k, (lo, hi, _) in enumerate(SPANS) if lo <= local < hi)
    return int(rep) * len(SPANS) + k, SPANS[k][2]


def expected(beat: float) -> int:
    return PITCH[span_at(beat)[1]]


def engines(c: Chart) -> list[Engine]:
    return [cls(EngineSettings(), c, bank(c), Transport(c.tempo, c.beats_per_bar))
            for cls in (Engine, SlowEngine)]


def test_the_program_puts_the_bar_lines_at_each_bars_own_length() -> None:
    program = build_program(bank(chart()), chart())
    assert program.bar_starts == (0.0, 4.0, 6.0, 9.0, 13.0)
    assert program.form_len == 13.0
    assert locate(program, 5.0) == (1, 1, 0)            # the 2/4 bar, F7
    assert locate(program, 8.5) == (2, 2, 1)            # the 3/4 bar, Ab7 on its 3rd beat
    assert locate(program, 9.0) == (3, 3, 0)            # A7: the 3/4 bar is over
    assert locate(program, 13.0 + 6.0) == (6, 2, 0)     # second time through


def test_the_chord_at_every_beat_fast_and_reference_path() -> None:
    """A note on every half beat through two forms (and a hair before and after each
    bar line): both paths send the same, the first note in each chord span is that
    chord's phrase note (so the span is the chart's there), and the notes after it go on
    along that chord's scale."""
    c = chart()
    scales = {span.chord.symbol: set(span.chord.scale) for bar in c.bars for span in bar.chords}
    fast, slow = engines(c)
    start = 10.0
    beats = sorted({k / 2 for k in range(2 * 2 * FORM)}
                   | {edge + d for rep in (0, FORM) for edge in (4, 6, 8, 9, 13)
                      for d in (-1e-3, 1e-3)})
    previous = None
    entered = []
    for beat in beats:
        now = start + beat * BEAT
        sent = fast.handle([0x90, 60, 100], now)
        assert sent == slow.handle([0x90, 60, 100], now), beat
        (status, pitch, velocity), = sent
        span, name = span_at(beat)
        if span != previous:
            assert pitch == PITCH[name], (beat, name, pitch)
            entered.append(name)
        else:
            assert pitch % 12 in scales[name], (beat, name, pitch)
        previous = span
        for e in (fast, slow):
            e.handle([0x80, 60, 0], now + 1e-4)
    assert entered == [name for _, _, name in SPANS] * 2
    assert fast.errors == slow.errors == 0


def test_the_first_note_anywhere_finds_the_chart_chord() -> None:
    """From a MIDI Start (no clock: the internal one), the first note at any half beat of
    two forms plays the chord the chart has there, on both paths."""
    c = chart()
    for k in range(1, 2 * 2 * FORM):
        beat = k / 2
        for e in engines(c):
            e.handle([START], 0.0)
            assert e.handle([0x90, 60, 100], beat * BEAT) == [[0x90, expected(beat), 100]], \
                (beat, e)


def test_the_transport_counts_bars_at_their_own_length() -> None:
    c = chart()
    fast, _ = engines(c)
    t = fast.transport
    t.feed([START], 0.0)
    t.tick(0.0)                                          # the downbeat
    positions = []
    for tick in range(1, 24 * 2 * FORM + 1):
        t.tick(tick * BEAT / 24)
        if tick % 24 == 0:
            positions.append(t.position(tick * BEAT / 24))
    bars = [bar for bar, _ in positions]
    # beats 1..26: bar lines at 4, 6, 9, 13 (= 0), 17, 19, 22
    assert bars[:13] == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 3, 3, 4]
    assert bars[13:] == [4, 4, 4, 5, 5, 6, 6, 6, 7, 7, 7, 7, 8]
    assert positions[6] == (2, pytest.approx(1.0))       # beat 7: 2nd beat of the 3/4 bar


@pytest.mark.parametrize("sixteenths,beat", [(4 * 4, 4.0), (4 * 6, 6.0), (4 * 8, 8.0),
                                             (4 * 9 + 2, 9.5), (4 * 19, 19.0),
                                             (4 * 21, 21.0)])
def test_song_position_pointer_into_the_changed_meters(sixteenths: int, beat: float) -> None:
    """SPP counts sixteenths from the start whatever the meters: the engine finds the bar
    and chord there, stopped and once the clock runs on from it."""
    c = chart()
    for e in engines(c):
        e.handle([SONG_POSITION, sixteenths & 127, sixteenths >> 7], 0.0)
        assert e.handle([0x90, 60, 100], 0.1) == [[0x90, expected(beat), 100]]
        e.handle([0x80, 60, 0], 0.2)
        e.handle([CONTINUE], 1.0)
        e.handle([CLOCK], 1.0)                          # the downbeat: beat `beat`
        now = 1.0
        for _ in range(36):                             # a beat and a half on
            now += BEAT / 24
            e.handle([CLOCK], now)
        (_, pitch, _), = e.handle([0x90, 60, 100], now)
        if span_at(beat + 1.5)[0] != span_at(beat)[0]:     # a new span: its phrase note
            assert pitch == expected(beat + 1.5)
        else:                                             # the line goes on over the chord
            assert pitch % 12 in c.chord_at(*c.locate(beat + 1.5)).scale
        e.handle([0x80, 60, 0], now)
        assert e.transport.position(now)[0] == c.locate(beat + 1.5)[0]


def test_a_new_bank_waits_for_the_end_of_the_short_bar() -> None:
    """Offered inside the 2/4 bar, a bank comes in at beat 6 (not 8, where a 4/4 bar would
    end): until then the engine plays what one never offered a bank plays."""
    c = chart()
    for cls in (Engine, SlowEngine):
        e, plain = (cls(EngineSettings(), c, bank(c), Transport(c.tempo, c.beats_per_bar))
                    for _ in range(2))
        for beat in (0.0, 4.5):
            for engine in (e, plain):
                engine.handle([0x90, 60, 100], beat * BEAT)
                engine.handle([0x80, 60, 0], beat * BEAT + 0.01)
        e.offer(bank(c, shift=12), now=4.6 * BEAT)
        for beat in (4.7, 5.9):
            assert e.handle([0x90, 60, 100], beat * BEAT) == plain.handle(
                [0x90, 60, 100], beat * BEAT)                            # the old bank
            e.handle([0x80, 60, 0], beat * BEAT + 0.01)
            plain.handle([0x80, 60, 0], beat * BEAT + 0.01)
        assert e.pending
        assert e.handle([0x90, 60, 100], 6.1 * BEAT) == [[0x90, 67 + 12, 100]]
        assert not e.pending and e.swaps == 1


def test_the_live_view_shows_each_bar_at_its_own_length() -> None:
    from melodyflowd.service.viewstate import Watcher

    c = chart()
    e, _ = engines(c)
    e.handle([0x90, 60, 100], 0.0)                      # the internal clock from beat 0
    e.handle([0x80, 60, 0], 0.01)
    state = Watcher().look(e, 7.5 * BEAT, chart=c, status="playing", bank_age=0.0,
                           bank_source="test", controls={})
    assert state["position"]["bar"] == 2                 # the 3/4 bar, on its 2nd beat
    assert state["position"]["beat"] == pytest.approx(1.5)
    assert state["ahead"]["bar_len"] == 3.0
    ahead = state["ahead"]["bars"]
    assert state["ahead"]["bar_lens"] == [c.bar_beats(b) for b in ahead]
    assert all(n["beat"] < c.bar_beats(ahead[n["bar"]]) for n in state["ahead"]["notes"])
