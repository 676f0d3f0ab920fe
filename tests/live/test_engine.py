"""Engine unit tests: one behaviour each, with a real chart, bank and transport (no mocks)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from melodyflowd.live.engine import KEYS_REACH, Engine, build_program
from melodyflowd.live.transport import Transport
from melodyflowd.music.chart import Bar, Chart, ChordSpan
from melodyflowd.music.phrases import BarPhrase, PhraseBank, PhraseNote, bank_bars
from melodyflowd.music.theory import parse_chord
from melodyflowd.settings import ControlMap, EngineSettings

BEAT = 0.5            # seconds a beat at 120 bpm
BAR = 4 * BEAT


def span(symbol: str, start: float, beats: float) -> ChordSpan:
    return ChordSpan(parse_chord(symbol), start, beats)


def make_chart(tempo: float = 120.0) -> Chart:
    """| Dm7 G7 | Cj7 | A7 | NC |  at 120 bpm, 4/4."""
    bars = (Bar(0, "A", (span("Dm7", 0, 2), span("G7", 2, 2))),
            Bar(1, "A", (span("Cj7", 0, 4),)),
            Bar(2, "A", (span("A7", 0, 4),)),
            Bar(3, "A", (span("NC", 0, 4),)))
    return Chart("ii-V-I", tempo, (4, 4), "C", None, bars, "test.yaml")


def notes(chord: str, *pitch_beats: tuple[int, float]) -> tuple[PhraseNote, ...]:
    return tuple(PhraseNote(p, 150, 200, 90, b, chord) for p, b in pitch_beats)


def make_bank(chart: Chart | None = None, shift: int = 0) -> PhraseBank:
    """v0: Dm7 62 65 69 | G7 71 74 | Cj7 64 67 71 | (empty) | (empty)
    v1: Dm7 77 | G7 (empty) | Cj7 72 60 65 | (empty) | (empty)"""
    chart = chart or make_chart()
    v0 = (BarPhrase(0, notes("Dm7", (62, 0), (65, 0.5), (69, 1)) + notes("G7", (71, 2), (74, 3))),
          BarPhrase(1, notes("Cj7", (64, 0), (67, 1), (71, 2))),
          BarPhrase(2, ()), BarPhrase(3, ()))
    v1 = (BarPhrase(0, notes("Dm7", (77, 0.5))),
          BarPhrase(1, notes("Cj7", (72, 0), (60, 1), (65, 2))),
          BarPhrase(2, ()), BarPhrase(3, ()))
    if shift:
        v0 = tuple(BarPhrase(p.bar, tuple(replace(n, pitch=n.pitch + shift) for n in p.notes))
                   for p in v0)
        v1 = tuple(BarPhrase(p.bar, tuple(replace(n, pitch=n.pitch + shift) for n in p.notes))
                   for p in v1)
    return PhraseBank(chart.title, chart.tempo, chart.time, bank_bars(chart), (v0, v1))


def make_engine(**settings) -> Engine:
    chart = make_chart()
    return Engine(EngineSettings(**settings), chart, make_bank(chart),
                  Transport(chart.tempo, chart.beats_per_bar))


def on(note: int, vel: int = 100, ch: int = 0) -> list[int]:
    return [0x90 | ch, note, vel]


def off(note: int, vel: int = 0, ch: int = 0) -> list[int]:
    return [0x80 | ch, note, vel]


def tap(engine: Engine, key: int, t: float, ch: int = 0) -> int:
    """Press and release a key at time t; returns the pitch played."""
    out = engine.handle(on(key, 100, ch), t)
    ons = [m for m in out if m[0] & 0xF0 == 0x90]
    assert len(ons) == 1
    engine.handle(off(key, 0, ch), t + 0.01)
    return ons[0][1]


# --- note mapping ------------------------------------------------------------------------

def test_note_on_plays_phrase_note_with_player_velocity() -> None:
    e = make_engine()
    assert e.handle([0x90, 40, 77], 100.0) == [[0x90, 62, 77]]   # first note starts the clock
    assert e.transport.running
    assert e.handle([0x80, 40, 33], 100.1) == [[0x80, 62, 33]]
    assert e.notes_remapped == 1


def test_velocity_zero_note_on_is_note_off() -> None:
    e = make_engine()
    e.handle(on(40), 0.0)
    assert e.handle([0x90, 40, 0], 0.1) == [[0x80, 62, 64]]


def test_phrase_advances_and_goes_on_past_its_end_within_chord() -> None:
    e = make_engine()
    played = [tap(e, 50 + i, 0.0 + i * 0.1) for i in range(6)]        # all within Dm7
    # v0's Dm7 phrase, then v1's (77), then down D dorian toward G7's first note (71)
    assert played == [62, 65, 69, 77, 76, 74]


def test_phrase_restarts_at_chord_change_and_bar_line() -> None:
    e = make_engine()
    assert tap(e, 60, 0.0) == 62
    assert tap(e, 60, 0.2) == 65
    assert tap(e, 60, 2 * BEAT) == 71             # G7 at beat 2: restart
    assert tap(e, 60, 2 * BEAT + 0.2) == 74
    assert tap(e, 60, BAR) == 64                  # bar 1, Cj7
    assert tap(e, 60, BAR + 0.1) == 67


def test_form_loops() -> None:
    e = make_engine()
    tap(e, 60, 0.0)
    assert tap(e, 60, 4 * BAR + 0.01) == 62       # bar 4 = bar 0 again
    assert tap(e, 60, 5 * BAR + 0.01) == 64


def test_empty_span_takes_other_variations_notes() -> None:
    e = make_engine()
    e.handle([0xB0, 23, 1], 0.0)                  # select variation 1 (G7 empty there)
    assert e.variation == 1
    tap(e, 60, 0.0)
    assert tap(e, 60, 2 * BEAT) == 71             # v0's G7 phrase
    assert tap(e, 60, 2 * BEAT + 0.1) == 74


def test_empty_bar_plays_chord_tones_near_last_note() -> None:
    e = make_engine()
    tap(e, 60, 0.0)
    assert tap(e, 60, BAR + 0.1) == 64
    assert tap(e, 60, BAR + 0.2) == 67            # last note 67
    played = [tap(e, 60, 2 * BAR + 0.1 * i) for i in range(5)]
    a7 = {9, 1, 4, 7}
    assert all(p % 12 in a7 for p in played)
    assert played[0] == 67                        # G, the A7 tone nearest the last note
    assert len(set(played[:4])) == 4              # an arpeggio through the chord tones
    assert max(played) - min(played) < 12
    program = e.program
    assert program.arpeggio[0][2][0]


def test_no_chord_bar_with_no_notes_uses_nearest_bar() -> None:
    e = make_engine()
    tap(e, 60, 0.0)
    played = [tap(e, 60, 3 * BAR + 0.1 * i) for i in range(6)]
    # Bar 2 is empty too, so the nearest bar with notes is bar 0 (the form loops); past
    # its notes the line goes on (variation 1's nearest bar, entered at 77).
    assert played == [62, 65, 69, 71, 74, 77]


def test_program_always_has_notes() -> None:
    program = build_program(make_bank(), make_chart())
    for variation in program.phrases:
        for bar in variation:
            for phrase in bar:
                assert phrase and all(0 <= p <= 127 for p in phrase)


def test_bank_without_any_notes_still_sounds() -> None:
    chart = make_chart()
    empty = tuple(BarPhrase(i, ()) for i in range(4))
    bank = PhraseBank("x", 120.0, (4, 4), bank_bars(chart), (empty,))
    e = Engine(EngineSettings(), chart, bank, Transport(120.0, 4.0))
    assert tap(e, 60, 0.0) % 12 in {2, 5, 9, 0}     # Dm7 tone
    assert tap(e, 60, 3 * BAR) == 67                 # NC, nothing anywhere: the centre


# --- mono / poly ---------------------------------------------------------------------------

def test_mono_new_key_ends_sounding_note() -> None:
    e = make_engine()
    assert e.handle(on(60), 0.0) == [[0x90, 62, 100]]
    assert e.handle(on(64), 0.1) == [[0x80, 62, 64], [0x90, 65, 100]]
    assert e.handle(off(60), 0.2) == []           # its note was already ended
    assert e.handle(off(64), 0.3) == [[0x80, 65, 0]]
    assert e.sounding() == []


def test_poly_keys_overlap() -> None:
    e = make_engine(mode="poly")
    assert e.handle(on(60), 0.0) == [[0x90, 62, 100]]
    assert e.handle(on(64), 0.1) == [[0x90, 65, 100]]
    assert e.sounding() == [(0, 62), (0, 65)]
    assert e.handle(off(60), 0.2) == [[0x80, 62, 0]]
    assert e.handle(off(64), 0.3) == [[0x80, 65, 0]]


def test_poly_shared_note_sounds_until_both_keys_up() -> None:
    e = make_engine(mode="poly")
    e.handle([0xB0, 23, 1], 0.0)                  # variation 1: Dm7 phrase starts on 77
    assert e.handle(on(60), 0.0) == [[0x90, 77, 100]]
    form = 4 * BAR                                # the form comes round: 77 again
    assert e.handle(on(62, 90), form) == [[0x80, 77, 64], [0x90, 77, 90]]   # struck again
    assert e.handle(off(60), form + 0.1) == []    # still held by the other key
    assert e.sounding() == [(0, 77)]
    assert e.handle(off(62), form + 0.2) == [[0x80, 77, 0]]
    assert e.sounding() == []


def test_repeated_note_on_without_off_releases_first() -> None:
    e = make_engine(mode="poly")
    e.handle(on(60), 0.0)
    assert e.handle(on(60), 0.1) == [[0x80, 62, 64], [0x90, 65, 100]]
    assert e.handle(off(60), 0.2) == [[0x80, 65, 0]]


# --- aftertouch, pass-through, split, channels -------------------------------------------

def test_poly_aftertouch_follows_key() -> None:
    e = make_engine(split=48)
    e.handle(on(60), 0.0)
    assert e.handle([0xA0, 60, 55], 0.1) == [[0xA0, 62, 55]]
    assert e.handle([0xA0, 61, 55], 0.1) == []             # remapped key, not sounding
    assert e.handle([0xA0, 40, 20], 0.1) == [[0xA0, 40, 20]]  # below split: passes


def test_pass_through_unchanged_in_order() -> None:
    e = make_engine()
    messages = [[0xB0, 7, 100], [0xE0, 0, 64], [0xC0, 5], [0xD0, 30], [0xB3, 1, 2],
                [0xF0, 0x7E, 0x7F, 0x06, 0x01, 0xF7], [0xF8], [0xFE], [0xF1, 0x20], [0xF3, 2],
                [0xF6]]
    for i, msg in enumerate(messages):
        out = e.handle(msg, 0.01 * i)
        assert out == [msg]
        assert out[0] is msg                  # the very message: nothing copied
    assert e.handle((0xB0, 7, 1), 1.0) == [[0xB0, 7, 1]]   # tuples come out as lists


def test_split_point() -> None:
    e = make_engine(split=60)
    assert e.handle(on(48, 70), 0.0) == [on(48, 70)]      # left hand passes through
    assert e.handle(on(60), 0.0) == [[0x90, 62, 100]]
    assert e.handle(off(48), 0.1) == [off(48)]
    assert e.handle(off(60), 0.1) == [[0x80, 62, 0]]


def test_channel_filter_and_out_channel() -> None:
    e = make_engine(channels=(1,), out_channel=5, mode="poly")
    assert e.handle(on(60, 80, ch=0), 0.0) == [on(60, 80, ch=0)]
    assert e.handle(on(60, 80, ch=1), 0.0) == [[0x95, 62, 80]]
    assert e.handle([0xA1, 60, 3], 0.0) == [[0xA5, 62, 3]]
    assert e.handle(off(60, 0, ch=1), 0.1) == [[0x85, 62, 0]]
    assert e.handle(off(60, 0, ch=0), 0.1) == [off(60, 0, ch=0)]


def test_drum_channel_passes_through_unless_named() -> None:
    e = make_engine(mode="poly")
    assert e.handle(on(36, 100, ch=9), 0.0) == [on(36, 100, ch=9)]     # a kick drum
    assert e.handle(off(36, 0, ch=9), 0.1) == [off(36, 0, ch=9)]
    assert e.handle(on(60, 100, ch=8), 0.0) == [[0x98, 62, 100]]
    named = make_engine(mode="poly", channels=(9,))
    assert named.handle(on(36, 100, ch=9), 0.0) == [[0x99, 62, 100]]
    assert named.handle(on(60, 100, ch=0), 0.0) == [on(60, 100, ch=0)]


def test_all_sixteen_channels_then_all_notes_off() -> None:
    e = make_engine(mode="poly", channels=tuple(range(16)))
    for ch in range(16):
        out = e.handle(on(60, 100, ch), 0.0)
        assert out[-1][0] == 0x90 | ch
    assert len(e.sounding()) == 16
    out = e.handle([0xB4, 123, 0], 0.1)
    assert out[-1] == [0xB4, 123, 0]              # passes on after the note-offs
    assert all(m[0] & 0xF0 == 0x80 for m in out[:-1])
    assert sorted(m[0] & 0x0F for m in out[:-1]) == list(range(16))
    assert e.sounding() == []
    for ch in range(16):
        assert e.handle(off(60, 0, ch), 0.2) == []


# --- anticipation and contour --------------------------------------------------------------

def test_anticipation_plays_next_chord_early() -> None:
    plain = make_engine()
    tap(plain, 60, 0.0)
    assert tap(plain, 60, 1.7 * BEAT) == 65       # still Dm7 at beat 1.7
    early = make_engine(anticipation_ms=300)      # 0.6 beat at 120 bpm
    tap(early, 60, 0.0)
    assert tap(early, 60, 1.7 * BEAT) == 71       # G7 already
    assert tap(early, 60, 2.1 * BEAT) == 74       # the same G7 phrase continues
    assert tap(early, 60, 1.2 * BEAT + BAR) == 64  # Cj7, not yet the next bar's A7


def test_contour_prefers_direction_of_key() -> None:
    e2 = make_engine(contour=True)
    e2.handle([0xF2, 16, 0], 0.0)                 # SPP: beat 4 = bar 1 (Cj7)
    e2.handle([0xFB], 0.0)                        # continue (internal clock, no ticks)
    assert tap(e2, 60, 0.01) == 64
    assert tap(e2, 55, 0.02) == 60                # key down: v0 has 67 (up), v1 has 60
    assert tap(e2, 70, 0.03) == 71                # key up: v0's 71 moves up
    # Without contour the same keys give the plain phrase.
    e3 = make_engine()
    e3.handle([0xF2, 16, 0], 0.0)
    e3.handle([0xFB], 0.0)
    assert [tap(e3, k, 0.01 * i) for i, k in enumerate((60, 55, 70), 1)] == [64, 67, 71]


def test_contour_when_nothing_moves_that_way_takes_closest() -> None:
    e = make_engine(contour=True)
    e.handle([0xF2, 16, 0], 0.0)
    e.handle([0xFB], 0.0)
    tap(e, 60, 0.01)                              # 64
    tap(e, 55, 0.02)                              # 60
    assert tap(e, 40, 0.03) == 65                 # down, but 71 and 65 both go up: 65 closer


# --- variations and controls ---------------------------------------------------------------

def test_variation_controls_consumed() -> None:
    e = make_engine()
    assert e.handle([0xB0, 21, 127], 0.0) == [] and e.variation == 1
    assert e.handle([0xB0, 21, 0], 0.0) == [] and e.variation == 1   # button release
    assert e.handle([0xB0, 21, 127], 0.0) == [] and e.variation == 0  # wraps
    assert e.handle([0xB0, 22, 127], 0.0) == [] and e.variation == 1
    assert e.handle([0xB0, 23, 4], 0.0) == [] and e.variation == 0
    assert tap(e, 60, 0.0) == 62
    e.handle([0xB0, 23, 1], 0.0)
    assert tap(e, 60, 0.1) == 77                  # variation change restarts the phrase


def test_controls_on_their_channel_only() -> None:
    e = make_engine(controls=ControlMap(channel=2))
    assert e.handle([0xB0, 21, 127], 0.0) == [[0xB0, 21, 127]]
    assert e.variation == 0
    assert e.handle([0xB2, 21, 127], 0.0) == []
    assert e.variation == 1


def test_controls_can_be_turned_off() -> None:
    e = make_engine(controls=ControlMap(regenerate=None, next_variation=None))
    assert e.handle([0xB0, 20, 127], 0.0) == [[0xB0, 20, 127]]
    assert e.regenerate_requests == 0


def test_regenerate_request_counter() -> None:
    e = make_engine()
    e.handle([0xB0, 20, 127], 0.0)
    e.handle([0xB0, 20, 0], 0.0)
    e.handle([0xB0, 20, 1], 0.0)
    assert e.regenerate_requests == 2


def test_rotate_variations_on_form_repeat() -> None:
    e = make_engine(rotate_variations=True)
    assert tap(e, 60, 0.0) == 62                  # pass 0: variation 0
    assert tap(e, 60, 4 * BAR + 0.1) == 77        # pass 1: variation 1
    assert tap(e, 60, 8 * BAR + 0.1) == 62        # pass 2: variation 0 again
    assert e.variation == 0


@pytest.mark.parametrize("message", [[0xB0, 24, 127], [0xB0, 120, 0], [0xB0, 123, 0], [0xFC],
                                     [0xFF]])
def test_panic_cc_all_off_and_stop_end_every_note(message: list[int]) -> None:
    e = make_engine(mode="poly", split=50)
    e.handle(on(60), 0.0)
    e.handle(on(61), 0.1)
    e.handle(on(40), 0.1)                         # passed through: not the engine's note
    out = e.handle(message, 0.2)
    offs = [m for m in out if m[0] == 0x80]
    assert sorted(m[1] for m in offs) == [62, 65]
    passed = [m for m in out if m[0] != 0x80]
    assert passed == ([] if message[1:2] == [24] else [message])
    assert e.sounding() == []
    assert e.handle(off(60), 0.3) == [] and e.handle(off(61), 0.3) == []


def test_panic_method() -> None:
    e = make_engine(mode="poly")
    e.handle(on(60), 0.0)
    e.handle(on(61), 0.0)
    assert sorted(e.panic()) == [[0x80, 62, 64], [0x80, 65, 64]]
    assert e.panic() == []


# --- transport through the engine ----------------------------------------------------------

def test_midi_clock_drives_the_chart() -> None:
    e = make_engine()
    tick = BEAT / 24
    assert e.handle([0xFA], 0.0) == [[0xFA]]
    for i in range(49):                            # downbeat + 48 ticks = beat 2
        assert e.handle([0xF8], i * tick) == [[0xF8]]
    assert tap(e, 60, 48 * tick) == 71             # G7
    assert e.transport.tempo == pytest.approx(120)


def test_song_position_pointer_through_engine() -> None:
    e = make_engine()
    e.handle([0xF2, 32, 0], 0.0)                   # 32 sixteenths = beat 8 = bar 2 (A7)
    assert tap(e, 60, 5.0) % 12 in {9, 1, 4, 7}    # stopped: position stays there


def test_stop_then_play_uses_frozen_position() -> None:
    e = make_engine()
    e.handle([0xFA], 0.0)                          # internal clock from Start
    e.handle([0xFC], BAR + 0.1)                    # stop in bar 1
    assert tap(e, 60, 100.0) == 64


# --- bank swap -----------------------------------------------------------------------------

def test_offer_swaps_at_next_bar_line_and_keeps_note_offs() -> None:
    e = make_engine(mode="poly")
    old_bank = e.bank
    assert e.handle(on(60), 0.0) == [[0x90, 62, 100]]
    new = make_bank(shift=12)
    e.offer(new)
    assert e.pending
    assert e.handle(on(61), 0.5 * BEAT) == [[0x90, 65, 100]]    # old bank until the bar line
    assert e.bank is old_bank
    assert e.handle(on(62), BAR + 0.01) == [[0x90, 76, 100]]    # bar 1: new bank (64 + 12)
    assert e.bank is new and not e.pending and e.swaps == 1
    assert e.handle(off(60), BAR + 0.1) == [[0x80, 62, 0]]      # old notes keep their offs
    assert e.handle(off(61), BAR + 0.1) == [[0x80, 65, 0]]
    assert e.handle(off(62), BAR + 0.1) == [[0x80, 76, 0]]


def test_offer_with_now_and_clock_messages_install_it() -> None:
    e = make_engine()
    tap(e, 60, 0.0)
    e.offer(make_bank(shift=1), now=0.2)            # bar line: bar 1
    e.handle([0xF8], BAR + 0.01)                    # any message after the line installs
    assert e.swaps == 1


def test_offer_when_stopped_installs_at_once() -> None:
    e = make_engine()
    new = make_bank(shift=2)
    e.offer(new)
    assert e.handle([0xB0, 7, 1], 0.0) == [[0xB0, 7, 1]]
    assert e.bank is new


def test_latest_offer_wins() -> None:
    e = make_engine()
    first, second = make_bank(shift=1), make_bank(shift=2)
    e.offer(first)
    e.offer(second)
    assert tap(e, 60, 0.0) == 64
    assert e.bank is second and e.swaps == 1


def test_offer_new_chart_sets_tempo() -> None:
    e = make_engine()
    tap(e, 60, 0.0)
    chart = make_chart(tempo=60.0)                 # a bar is now 4 s
    e.offer(make_bank(chart), chart, now=0.1)
    assert tap(e, 60, BAR + 0.01) == 64            # bar 1 (same place at the old tempo)
    assert e.chart is chart
    assert e.transport.tempo == 60.0
    assert tap(e, 60, BAR + 0.02 + 4.0) % 12 in {9, 1, 4, 7}   # bar 2 at 60 bpm


def test_variation_clamped_when_new_bank_has_fewer() -> None:
    e = make_engine()
    e.handle([0xB0, 23, 1], 0.0)
    chart = make_chart()
    bank = make_bank(chart)
    one = PhraseBank(bank.title, bank.tempo, bank.time, bank.bars, bank.variations[:1])
    e.offer(one)
    assert tap(e, 60, 0.0) == 62
    assert e.variation == 0


# --- bad input -----------------------------------------------------------------------------

@pytest.mark.parametrize("message", [
    [], [0x90], [0x90, 60], [0x90, 200, 100], [0x90, 60, 128], [0x45, 1, 2], [0xF4], [0xF5],
    [0xF9], [0xFD], [0xF7], [0xF0, 1, 2], [0xF0, 0x80, 0xF7], [0xF2, 1], [0xF8, 1],
    [0xC0, 1, 2], [0xB0, 1], [0x90, -1, 5], [300], [0x90, "x", 1], [None], [0x90, 60, 100, 1],
])
def test_malformed_input_never_raises(message: list) -> None:
    e = make_engine()
    assert e.handle(message, 0.0) == []
    assert e.dropped + e.errors == 1
    assert e.sounding() == []


def test_note_off_without_note_on() -> None:
    e = make_engine()
    assert e.handle(off(60), 0.0) == []
    assert e.handle([0x90, 60, 0], 0.0) == []
    assert e.handle([0xA0, 60, 10], 0.0) == []


def test_flood_of_notes_leaves_nothing_on() -> None:
    e = make_engine(mode="poly", channels=tuple(range(16)))
    sounding: dict[tuple[int, int], int] = {}
    t = 0.0
    for i in range(2000):                          # 1000 notes/s over every channel
        t += 0.001
        ch, key = i % 16, 36 + (i * 7) % 60
        for m in e.handle(on(key, 1 + i % 127, ch), t) + e.handle(off(key, 0, ch), t):
            k = (m[0] & 0x0F, m[1])
            if m[0] & 0xF0 == 0x90:
                assert sounding.get(k, 0) == 0
                sounding[k] = 1
            else:
                assert sounding.get(k, 0) == 1
                sounding[k] = 0
    assert not any(sounding.values())
    assert e.sounding() == [] and e.notes_remapped == 2000


# --- the whole pure path: chart text -> bank file -> engine driven by MIDI clock ----------

def test_chart_bank_file_and_clock_end_to_end(tmp_path) -> None:
    from melodyflowd.music.chart import parse_chart
    from melodyflowd.music.phrases import check_bank_for_chart, load_bank, save_bank

    chart = parse_chart('tempo: 150\nchords: "| Dm7 G7 | Cmaj7 | % |"\n', "drill.yaml")
    assert [len(bar.chords) for bar in chart.bars] == [2, 1, 1]
    bars = bank_bars(chart)
    phrases = (BarPhrase(0, notes("Dm7", (62, 0), (65, 1)) + notes("G7", (67, 2), (71, 3))),
               BarPhrase(1, notes("Cmaj7", (72, 0), (76, 2))),
               BarPhrase(2, notes("Cmaj7", (79, 0))))
    path = save_bank(PhraseBank("drill", 150.0, (4, 4), bars, (phrases,)), tmp_path / "b.json")
    bank = load_bank(path)
    check_bank_for_chart(bank, chart, str(path))
    e = Engine(EngineSettings(), chart, bank, Transport(chart.tempo, chart.beats_per_bar))

    tick = 60 / 150 / 24                           # the DAW's clock at 150 bpm
    played: list[tuple[int, int]] = []             # (bar, pitch)
    now = 0.0
    e.handle([0xFA], now)
    for i in range(24 * 4 * 3):                    # three bars of clock
        now = i * tick
        e.handle([0xF8], now)
        if i % 24 == 12:                           # a key on every off-beat eighth
            out = e.handle(on(60), now + 0.001)
            played.append((i // 96, out[-1][1]))
            e.handle(off(60), now + 0.002)
    # Past a phrase's end the line walks C ionian toward the next chord's first note (79
    # in bar 2, then 62 of bar 1 as the form loops), never back to the phrase's start.
    assert played == [(0, 62), (0, 65), (0, 67), (0, 71),
                      (1, 72), (1, 76), (1, 77), (1, 79),
                      (2, 79), (2, 77), (2, 76), (2, 74)]
    assert e.transport.tempo == pytest.approx(150)
    assert e.sounding() == []


def test_offer_swaps_when_the_daw_jumps_back() -> None:
    e = make_engine()
    e.handle([0xF2, 40, 0], 0.0)                   # SPP: beat 10, bar 2
    e.handle([0xFB], 0.0)                          # continue, internal clock
    new = make_bank(shift=3)
    e.offer(new, now=0.1)
    e.handle([0xFC], 0.2)                          # stop: installs at once (not running)
    assert e.bank is new
    e.offer(make_bank(shift=4), now=0.2)           # stopped: no bar line needed
    e.handle([0xF2, 0, 0], 0.3)                    # locate to the start
    assert e.swaps == 2
    e.handle([0xFA], 1.0)                          # start again at bar 0
    e.offer(make_bank(shift=5), now=1.1)
    e.handle([0xF2, 32, 0], 1.2)                   # jump to bar 2 while running
    assert e.swaps == 3


# --- live settings ---------------------------------------------------------------------------

def test_update_settings_live_and_keys_down_stay_the_engines() -> None:
    e = make_engine(mode="poly")
    assert e.handle(on(50), 0.0) == [[0x90, 62, 100]]
    e.update_settings(EngineSettings(mode="poly", split=60))
    assert e.settings.split == 60
    assert e.handle([0xA0, 50, 9], 0.1) == [[0xA0, 62, 9]]   # still follows its note
    assert e.handle(off(50), 0.2) == [[0x80, 62, 0]]          # ends the engine's note
    assert e.handle(on(50), 0.3) == [on(50)]                  # now below the split: passes
    assert e.handle(off(50), 0.4) == [off(50)]
    assert e.handle(on(70), 0.5)[-1][0] == 0x90                # above: remapped


def test_update_settings_key_pressed_again_passes_after_its_note_ends() -> None:
    e = make_engine()
    e.handle(on(50, ch=0), 0.0)
    e.update_settings(EngineSettings(channels=(1,)))
    assert e.handle(on(50, 90, ch=0), 0.1) == [[0x80, 62, 64], on(50, 90, ch=0)]
    assert e.handle(off(50, ch=0), 0.2) == [off(50, ch=0)]
    assert e.sounding() == []


def test_update_settings_mono_to_poly_and_controls() -> None:
    e = make_engine()
    e.update_settings(EngineSettings(mode="poly", controls=ControlMap(next_variation=30)))
    e.handle(on(60), 0.0)
    e.handle(on(61), 0.1)
    assert len(e.sounding()) == 2
    assert e.handle([0xB0, 21, 127], 0.2) == [[0xB0, 21, 127]]   # no longer a control
    assert e.handle([0xB0, 30, 127], 0.2) == [] and e.variation == 1


def test_register_keys_moves_the_line_by_octaves_toward_the_keys_played():
    line, keys = make_engine(), make_engine(register="keys")
    low_keys = [36, 38, 40, 38, 36, 38, 40, 38]       # two octaves under the phrases
    t = 0.0
    played_line, played_keys = [], []
    for k in low_keys:
        played_line.append(tap(line, k, t))
        played_keys.append(tap(keys, k, t))
        t += 0.5
    moves = [a - b for a, b in zip(played_line, played_keys, strict=True)]
    assert all(m % 12 == 0 and m > 0 for m in moves)   # whole octaves down, notes kept
    # the octave changes only when the line strays past the reach: its intervals mostly stay
    assert sum(a != b for a, b in zip(moves, moves[1:], strict=False)) <= 2
    mean = sum(low_keys) / len(low_keys)
    assert all(abs(p - mean) <= KEYS_REACH + 2 for p in played_keys)


def test_register_line_plays_the_phrase_where_it_was_written():
    line, keys = make_engine(), make_engine(register="keys")
    near = [64, 65, 67, 64]                            # keys where the phrases sit
    t = 0.0
    for k in near:
        assert tap(line, k, t) == tap(keys, k, t)
        t += 0.5
