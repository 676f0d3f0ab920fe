"""The engine's fast path for note-ons and note-offs (Engine.handle's inline path, the span
cache, the Program's span tables, Transport.line) against the plain reference path
(Engine._handle / _note_on, the formulas the engine had before the fast path existed).

The main property: two engines, one that takes the fast path whenever it can and one that
never does, fed the same random messages, bank offers and settings changes at the same
times, send exactly the same messages and end in the same state."""

from __future__ import annotations

from bisect import bisect_right

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from melodyflowd.live.engine import _EPS, Engine, Program, build_program, locate
from melodyflowd.live.transport import CLOCK, CONTINUE, SONG_POSITION, START, STOP, Transport
from melodyflowd.music.chart import Bar, Chart, ChordSpan
from melodyflowd.music.phrases import BarPhrase, PhraseBank, bank_bars
from melodyflowd.music.theory import parse_chord
from melodyflowd.settings import EngineSettings
from tests.live.test_engine import make_bank, make_chart, notes
from tests.live.test_engine_properties import engine_settings, message, narrow

PROPS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class SlowEngine(Engine):
    """The same engine that always takes the reference path."""

    def handle(self, msg, now):
        try:
            return self._handle(msg, now)
        except Exception:
            self.errors += 1
            return []


def odd_chart() -> Chart:
    """Three bars in 4/4 with uneven chord spans: | C7:1.5 F7:2.5 | G7 A7 B7 | NC |  and a
    tempo that puts no chord change on a round time."""
    def span(symbol: str, start: float, beats: float) -> ChordSpan:
        return ChordSpan(parse_chord(symbol), start, beats)

    third = 4.0 / 3.0
    bars = (Bar(0, "A", (span("C7", 0, 1.5), span("F7", 1.5, 2.5))),
            Bar(1, "A", (span("G7", 0, third), span("A7", third, third),
                         span("B7", 2 * third, third))),
            Bar(2, "A", (span("NC", 0, 4),)))
    return Chart("odd", 137.0, (4, 4), "C", None, bars, "odd.yaml")


def odd_bank(chart: Chart, shift: int = 0) -> PhraseBank:
    v0 = (BarPhrase(0, notes("C7", (60 + shift, 0), (64 + shift, 1)) + notes(
              "F7", (65 + shift, 1.5), (69 + shift, 3))),
          BarPhrase(1, notes("G7", (67 + shift, 0.5)) + notes("B7", (71 + shift, 3.0))),
          BarPhrase(2, ()))
    v1 = (BarPhrase(0, ()), BarPhrase(1, notes("A7", (61 + shift, 1.5), (64 + shift, 2))),
          BarPhrase(2, notes("NC", (70 + shift, 0.0))))
    return PhraseBank(chart.title, chart.tempo, chart.time, bank_bars(chart), (v0, v1))


def meters_chart() -> Chart:
    """4/4 with a 2/4 and a 3/4 bar inside: | C7 | 2/4 F7 G7 | 3/4 A7:2 D7 | NC |  (bars
    start on beats 0, 4, 6, 9; the form is 13 beats long)."""
    def span(symbol: str, start: float, beats: float) -> ChordSpan:
        return ChordSpan(parse_chord(symbol), start, beats)

    bars = (Bar(0, "A", (span("C7", 0, 4),)),
            Bar(1, "A", (span("F7", 0, 1), span("G7", 1, 1)), time=(2, 4)),
            Bar(2, "A", (span("A7", 0, 2), span("D7", 2, 1)), time=(3, 4)),
            Bar(3, "A", (span("NC", 0, 4),)))
    return Chart("meters", 120.0, (4, 4), "C", None, bars, "meters.yaml")


def meters_bank(chart: Chart, shift: int = 0) -> PhraseBank:
    v0 = (BarPhrase(0, notes("C7", (60 + shift, 0), (64 + shift, 2), (67 + shift, 3.5))),
          BarPhrase(1, notes("F7", (65 + shift, 0), (69 + shift, 0.5)) + notes(
              "G7", (71 + shift, 1.5))),
          BarPhrase(2, notes("A7", (73 + shift, 0)) + notes("D7", (74 + shift, 2.5))),
          BarPhrase(3, notes("NC", (70 + shift, 1))))
    v1 = (BarPhrase(0, notes("C7", (72 + shift, 1))), BarPhrase(1, ()),
          BarPhrase(2, notes("D7", (66 + shift, 2))), BarPhrase(3, ()))
    return PhraseBank(chart.title, chart.tempo, chart.time, bank_bars(chart), (v0, v1))


CHARTS = 3


def charts_and_banks(which: int) -> tuple[Chart, list[PhraseBank]]:
    if which == 0:
        chart = make_chart()
        return chart, [make_bank(chart), make_bank(chart, shift=5), make_bank(chart, shift=-7),
                       narrow(make_bank(chart))]
    if which == 2:
        chart = meters_chart()
        return chart, [meters_bank(chart), meters_bank(chart, 5), meters_bank(chart, -7),
                       narrow(meters_bank(chart))]
    chart = odd_chart()
    return chart, [odd_bank(chart), odd_bank(chart, 5), odd_bank(chart, -7),
                   narrow(odd_bank(chart))]


# Times: small steps (many notes in one chord span), big ones, and steps that land exactly
# on beats, bar lines and chord changes.
gap = st.one_of(st.floats(0, 0.08), st.floats(0, 0.8),
                st.sampled_from([0.0, 0.125, 0.25, 0.5, 1.0, 1.5, 2.0, 60 / 137 * 4 / 3,
                                 60 / 137 * 1.5, 1e-9, 5e-10, 1e-7, 0.5 - 1e-7, 0.25 - 2e-8,
                                 2.0 - 3e-7, 60 / 137 * 4 / 3 - 1e-7]))
keys = st.tuples(st.integers(0, 3), st.integers(30, 90), st.integers(1, 127))
played = st.one_of(keys.map(lambda t: [0x90 | t[0], t[1], t[2]]),
                   keys.map(lambda t: [0x80 | t[0], t[1], t[2]]),
                   keys.map(lambda t: [0x90 | t[0], t[1], 0]))
transport_msg = st.sampled_from([[CLOCK]] * 8 + [[START], [CONTINUE], [STOP],
                                                 [SONG_POSITION, 16, 0], [SONG_POSITION, 5, 1]])
step = st.one_of(
    st.tuples(st.just("msg"), played, gap), st.tuples(st.just("msg"), played, gap),
    st.tuples(st.just("msg"), played, gap), st.tuples(st.just("msg"), message, gap),
    st.tuples(st.just("msg"), transport_msg, st.floats(0, 0.03)),
    st.tuples(st.just("offer"), st.integers(0, 3), gap),
    st.tuples(st.just("settings"), engine_settings, gap),
)


def state(engine: Engine) -> tuple:
    return (engine.sounding(), engine.variation, engine.notes_remapped, engine.swaps,
            engine.regenerate_requests, engine.dropped, engine.errors, engine.pending,
            engine.transport.beat_at(1e6), engine.transport.tempo)


@PROPS
@given(engine_settings, st.lists(step, max_size=80), st.integers(0, 3),
       st.integers(0, CHARTS - 1))
def test_short_way_sends_what_the_reference_sends(s: EngineSettings, steps: list, first: int,
                                                  which: int) -> None:
    chart, banks = charts_and_banks(which)
    fast = Engine(s, chart, banks[first], Transport(chart.tempo, chart.beats_per_bar))
    slow = SlowEngine(s, chart, banks[first], Transport(chart.tempo, chart.beats_per_bar))
    now = 50.0
    for kind, value, dt in steps:
        now += dt
        if kind == "offer":
            for engine in (fast, slow):
                engine.offer(banks[value], now=now if value == 2 else None)
        elif kind == "settings":
            for engine in (fast, slow):
                engine.update_settings(value)
        else:
            assert fast.handle(list(value), now) == slow.handle(list(value), now), (value, now)
        assert state(fast) == state(slow)
    assert fast.errors == 0 and slow.errors == 0
    assert fast.panic() == slow.panic()


@PROPS
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 127)), max_size=60),
       st.integers(0, CHARTS - 1), st.booleans())
def test_many_notes_in_a_row_match(taps: list, which: int, rotate: bool) -> None:
    """Notes at a steady pace through several forms: most take the cached span, some the
    next-span step, a few the full search."""
    chart, banks = charts_and_banks(which)
    s = EngineSettings(rotate_variations=rotate)
    fast = Engine(s, chart, banks[0], Transport(chart.tempo, chart.beats_per_bar))
    slow = SlowEngine(s, chart, banks[0], Transport(chart.tempo, chart.beats_per_bar))
    now = 3.0
    for step, key in taps:
        now += (0.05, 0.31, 1.3, 7.9)[step]
        for msg in ([0x90, 40 + key % 40, 90], [0x80, 40 + key % 40, 0]):
            assert fast.handle(list(msg), now) == slow.handle(list(msg), now)
            now += 0.01
    assert state(fast) == state(slow)


# --- the program's span tables against the bisect over chord starts ---------------------

def reference_span(program: Program, beat: float) -> tuple[int, int, int]:
    """(absolute bar, bar in the form, span in the bar) as _note_on must find them: whole
    forms, then bar after bar at each bar's own meter's length."""
    chart = program.chart
    rep = int(beat // chart.form_beats)
    abs_bar, start = rep * program.n_bars, rep * chart.form_beats
    while beat >= start + chart.bar_beats(abs_bar):
        start += chart.bar_beats(abs_bar)
        abs_bar += 1
    bar = abs_bar % program.n_bars
    span = bisect_right(program.starts[bar], beat - start + 1e-9) - 1
    return abs_bar, bar, max(span, 0)


def programs() -> list[Program]:
    out = []
    for which in range(CHARTS):
        chart, banks = charts_and_banks(which)
        out += [build_program(bank, chart) for bank in banks]
    return out


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.floats(0, 200), st.integers(0, 2400).map(lambda k: k / 12)),
       st.sampled_from(range(4 * CHARTS)))
def test_span_tables_agree_with_the_bisect(beat: float, which: int) -> None:
    program = programs()[which]
    assert locate(program, beat) == reference_span(program, beat)
    abs_bar, bar, span = reference_span(program, beat)
    g = program.first_span[bar] + span
    assert (program.span_bar[g], program.span_index[g]) == (bar, span)
    rep = abs_bar // program.n_bars
    rel = beat - rep * program.form_len
    assert program.span_lo[g] - _EPS <= rel < program.span_hi[g] + _EPS
    # Every beat inside a span's table interval is that span for the bisect too.
    lo, hi = program.span_lo[g] + _EPS, program.span_hi[g] - _EPS
    if lo < hi:
        for x in (lo, (lo + hi) / 2, hi - 1e-9):
            assert reference_span(program, rep * program.form_len + x)[1:] == (bar, span)


def test_span_tables_cover_the_form_in_order() -> None:
    for program in programs():
        assert program.n_spans == sum(len(row) for row in program.starts)
        assert program.span_lo[0] == 0.0
        assert program.span_hi[-1] == program.form_len
        for g in range(1, program.n_spans):
            assert program.span_lo[g] == program.span_hi[g - 1]
        for bar in range(program.n_bars):
            assert program.span_bar[program.first_span[bar]] == bar
            assert program.span_index[program.first_span[bar]] == 0


def test_near_tables_pick_the_nearest_note() -> None:
    seen = 0
    for program in programs():
        for v in range(program.n_var):
            for g in range(program.n_spans):
                bar, span = program.span_bar[g], program.span_index[g]
                table = program.near[v][g]
                assert (table is not None) == program.arpeggio[v][bar][span]
                if table is None:
                    continue
                seen += 1
                phrase = program.phrases[v][bar][span]
                for last in range(128):
                    assert table[last] == min(range(len(phrase)),
                                              key=lambda i: abs(phrase[i] - last))
    assert seen                     # the test charts have chord-tone fallback spans


def test_unordered_chord_starts_leave_no_tables() -> None:
    """A chart whose chord starts are out of order (never from chart.py) gets no tables:
    every note-on then takes the reference path, and still plays."""
    chart = make_chart()
    bar0 = chart.bars[0]
    swapped = Bar(0, "A", (bar0.chords[1], bar0.chords[0]))
    chart = Chart(chart.title, chart.tempo, chart.time, chart.key, chart.style,
                  (swapped, *chart.bars[1:]), chart.source)
    program = build_program(make_bank(make_chart()), chart)
    assert program.n_spans == 0
    fast = Engine(EngineSettings(), chart, make_bank(make_chart()),
                  Transport(chart.tempo, chart.beats_per_bar))
    slow = SlowEngine(EngineSettings(), chart, make_bank(make_chart()),
                      Transport(chart.tempo, chart.beats_per_bar))
    for i in range(20):
        for msg in ([0x90, 60, 100], [0x80, 60, 0]):
            assert fast.handle(list(msg), 0.37 * i) == slow.handle(list(msg), 0.37 * i)


def test_notes_right_at_chord_changes_match() -> None:
    """Around every chord change and bar line of two forms, from a key played just before:
    a hair before, on and after the edge (the span cache stops _EPS short of the edges; the
    reference sees the 1e-9 tolerance)."""
    for which in range(CHARTS):
        chart, banks = charts_and_banks(which)
        program = build_program(banks[0], chart)
        seconds_per_beat = 60.0 / chart.tempo
        for offset in (-2e-6, -5e-7, -5e-10, 0.0, 5e-10, 5e-7, 2e-6):
            fast = Engine(EngineSettings(), chart, banks[0],
                          Transport(chart.tempo, chart.beats_per_bar))
            slow = SlowEngine(EngineSettings(), chart, banks[0],
                              Transport(chart.tempo, chart.beats_per_bar))
            start = 10.0
            edges = [rep * program.form_len + lo for rep in range(2) for lo in program.span_lo]
            for edge in edges[1:]:
                for beat in (edge - 0.3, edge + offset):
                    now = start + beat * seconds_per_beat
                    for msg in ([0x90, 60, 100], [0x80, 60, 0]):
                        if beat == edges[1] - 0.3 and msg[0] == 0x90:
                            # the first note starts the internal clock at `start`
                            assert fast.handle([0x90, 61, 1], start) == slow.handle(
                                [0x90, 61, 1], start)
                        assert fast.handle(list(msg), now) == slow.handle(list(msg), now), \
                            (which, offset, edge)
            assert state(fast) == state(slow)


# --- what the callback must not free: swapped-out and superseded banks --------------------

def test_a_swapped_out_program_is_freed_by_release_retired_not_by_the_callback() -> None:
    import weakref

    chart = make_chart()
    e = Engine(EngineSettings(), chart, make_bank(chart), Transport(chart.tempo, 4.0))
    e.handle([0x90, 60, 100], 0.0)                 # starts the clock; caches the span
    e.handle([0x80, 60, 0], 0.1)
    old = weakref.ref(e.program)
    e.offer(make_bank(chart, shift=3))
    e.handle([0x90, 60, 100], 0.2)                 # pending, inside the bar it waits in
    e.handle([0x80, 60, 0], 0.3)
    assert e.pending and old() is e.program
    assert e.handle([0x90, 60, 100], 2.1) == [[0x90, 67, 100]]   # bar 1: swapped in
    e.handle([0x80, 60, 0], 2.2)
    assert e.swaps == 1 and old() is not None      # the callback kept it alive ...
    assert e.release_retired() == 1                # ... the main loop frees it
    assert old() is None
    assert e.release_retired() == 0


def test_a_superseded_offer_is_not_kept_by_the_waiting_window() -> None:
    import weakref

    chart = make_chart()
    e = Engine(EngineSettings(), chart, make_bank(chart), Transport(chart.tempo, 4.0))
    e.handle([0x90, 60, 100], 0.0)
    e.offer(make_bank(chart, shift=3))
    e.handle([0x80, 60, 0], 0.1)                   # the window of the first offer
    first = weakref.ref(e._offer.program)
    e.offer(make_bank(chart, shift=5))             # supersedes it (main thread)
    assert first() is None                         # freed there, not later in the callback
    assert e.handle([0x90, 60, 100], 0.2) == [[0x90, 65, 100]]
    assert e.handle([0x90, 61, 100], 2.1)[-1] == [0x90, 69, 100]  # the second one, bar 1


def test_a_note_off_after_the_bar_line_swaps_a_waiting_bank_in() -> None:
    """A bank waits for the bar line; the first message after it is a note-off (the short
    way must not keep waiting), just after the line or a bar later."""
    for late in (0.001, 0.3, 2.5):
        chart = make_chart()
        engines = [cls(EngineSettings(mode="poly"), chart, make_bank(chart),
                       Transport(chart.tempo, 4.0)) for cls in (Engine, SlowEngine)]
        for e in engines:
            assert e.handle([0x90, 60, 100], 0.0) == [[0x90, 62, 100]]
            e.offer(make_bank(chart, shift=3))
            assert e.handle([0x90, 61, 100], 0.3) == [[0x90, 65, 100]]   # waits: old bank
            assert e.handle([0x80, 61, 0], 0.4) == [[0x80, 65, 0]]
            assert e.pending and e.swaps == 0
            assert e.handle([0x80, 60, 0], 2.0 + late) == [[0x80, 62, 0]]   # old note's off
            assert not e.pending and e.swaps == 1                          # ... and the swap
        assert state(engines[0]) == state(engines[1])
