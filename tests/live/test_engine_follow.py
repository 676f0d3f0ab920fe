"""The engine in follow mode: the left hand (or a chord channel) names the chord, the right
hand plays lines over it; with a chart, the played chord wins while it differs."""

from __future__ import annotations

from functools import lru_cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from melodyflowd.live.engine import Engine
from melodyflowd.live.follow import FollowProgram, build_follow
from melodyflowd.live.transport import Transport
from melodyflowd.music.theory import parse_chord
from melodyflowd.settings import EngineSettings
from tests.live.test_engine import make_bank, make_chart
from tests.live.test_engine_fast import SlowEngine
from tests.support.follow_bank import make_follow_bank

PROPS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Left-hand voicings (below middle C): a ii-V-I in C, F and Bb, rooted, rootless A and B.
II_V_I = {
    "C": ([38, 50, 53, 57, 48], [53, 57, 59, 52], [52, 55, 59, 50]),
    "F": ([43, 46, 50, 53], [46, 50, 52, 57], [45, 48, 52, 55]),
    "Bb": ([36, 51, 55, 46], [51, 55, 57, 50], [50, 53, 57, 48]),
}
EXPECTED = {"C": ("Dm7", "G13", "Cmaj9"), "F": ("Gm7", "C13", "Fmaj9"),
            "Bb": ("Cm7", "F13", "Bbmaj9")}


@lru_cache(maxsize=2)
def follow_program(key: str | None = None) -> FollowProgram:
    bank, chart = make_follow_bank()
    return build_follow(bank, chart, key)


def follow_engine(cls=Engine, **settings) -> Engine:
    bank, chart = make_follow_bank()
    engine = cls(EngineSettings(follow=True, **settings), chart, bank,
                 Transport(chart.tempo, chart.beats_per_bar))
    engine.offer_follow(follow_program())
    return engine


def chord(engine: Engine, notes: list[int], now: float, channel: int = 0,
          down: bool = True) -> list[list[int]]:
    out = []
    for n in notes:
        msg = [(0x90 if down else 0x80) | channel, n, 70 if down else 0]
        got = engine.handle(msg, now)
        assert got == [msg] and got[0] is msg          # passes through, the same message
        out += got
    return out


def test_the_left_hand_passes_through_and_names_the_chord():
    engine = follow_engine()
    for key, voicings in II_V_I.items():
        for voicing, name in zip(voicings, EXPECTED[key], strict=True):
            chord(engine, voicing, 0.0)
            assert engine.follow_chord.symbol == name
            chord(engine, voicing, 0.1, down=False)
            assert engine.follow_chord.symbol == name      # released: it holds


def test_a_chord_change_takes_effect_for_the_very_next_note():
    engine = follow_engine()
    now = 0.0
    for voicing in II_V_I["F"]:
        chord(engine, voicing, now)
        scale = set(engine.follow_chord.scale)
        for key in (72, 74, 76, 77, 79):
            now += 0.1
            out = engine.handle([0x90, key, 100], now)
            assert out[-1][0] == 0x90 and out[-1][1] % 12 in scale
            engine.handle([0x80, key, 0], now + 0.05)
        chord(engine, voicing, now, down=False)
    assert engine.errors == 0 and engine.sounding() == []


def test_the_first_notes_before_any_chord_play_the_default():
    engine = follow_engine()
    out = engine.handle([0x90, 72, 90], 0.0)
    assert out[-1][1] % 12 in parse_chord("Cmaj7").scale


def test_a_chord_channel_and_a_bass_channel():
    engine = follow_engine(chord_channel=1, bass_channel=2)
    assert engine.follow_split is None
    chord(engine, [77, 81, 83, 88], 0.0, channel=1)      # F A B E high up on the chord track
    assert engine.follow_chord.symbol == "Fmaj7#11"
    chord(engine, [77, 81, 83, 88], 0.1, channel=1, down=False)
    bass = [0x92, 31, 90]
    assert engine.handle(bass, 0.2) == [bass]            # G in the bass
    chord(engine, [77, 81, 83, 88], 0.2, channel=1)
    assert engine.follow_chord.symbol == "G13"
    out = engine.handle([0x90, 40, 100], 0.3)             # channel 1: every key is remapped
    assert out[-1][1] % 12 in parse_chord("G13").scale


def test_with_a_chart_the_played_chord_wins_while_it_differs():
    # chart: | Dm7 G7 | Cj7 | A7 | NC | at 120 bpm (2 beats a second), key C
    chart = make_chart()
    follow_bank, fchart = make_follow_bank()
    engine = Engine(EngineSettings(follow=True, mode="poly"), chart, make_bank(chart),
                    Transport(chart.tempo, chart.beats_per_bar))
    engine.offer_follow(build_follow(follow_bank, fchart, chart.key))
    chart_notes = {62, 65, 69, 77, 71, 74, 64, 67, 72, 60}
    out = engine.handle([0x90, 72, 100], 0.0)             # starts the clock: Dm7
    assert out[-1][1] in chart_notes
    engine.handle([0x80, 72, 0], 0.1)
    chord(engine, [38, 53, 57, 48], 0.2)                  # Dm7 as the chart has it: agree
    assert engine.handle([0x90, 73, 100], 0.3)[-1][1] in chart_notes
    engine.handle([0x80, 73, 0], 0.4)
    chord(engine, [38, 53, 57, 48], 0.45, down=False)
    chord(engine, [49, 53, 59], 1.1)                      # Db F B over the chart's G7
    assert engine.follow_chord.symbol.startswith("Db")
    db7 = set(parse_chord("Db7").scale)
    out = engine.handle([0x90, 74, 100], 1.2)
    assert out[-1][1] % 12 in db7
    engine.handle([0x80, 74, 0], 1.3)
    chord(engine, [49, 53, 59], 1.4, down=False)
    # the chart's next bar (Cj7, from 2.0 s): no key held, so the chart leads again
    out = engine.handle([0x90, 75, 100], 2.2)
    assert out[-1][1] in chart_notes
    assert engine.errors == 0


def test_all_notes_off_forgets_the_chord_keys_not_the_chord():
    engine = follow_engine()
    chord(engine, [38, 50, 53, 57, 48], 0.0)
    engine.handle([0xB0, 123, 0], 0.1)
    assert engine.follow_chord.symbol == "Dm7"
    # F A B E alone (the Dm7 keys were forgotten), after Dm7 (the chord held): G13
    chord(engine, [53, 57, 59, 52], 0.2)
    assert engine.follow_chord.symbol == "G13"


# --- properties: a held chord changing under a running right hand --------------------------

VOICINGS = [v for key in II_V_I.values() for v in key] + [[41, 47, 49], [40, 44, 46, 50]]

left = st.tuples(st.just("chord"), st.sampled_from(range(len(VOICINGS))), st.booleans())
right = st.tuples(st.just("key"), st.integers(60, 90), st.booleans())
steps = st.lists(st.one_of(left, right, right, right), max_size=60)


def play(engine: Engine, plan: list) -> tuple[list, set, set]:
    """Feed the plan; check every output as it comes. Returns (inputs, keys down, chord
    notes down)."""
    sounding: set[int] = set()
    keys: set[int] = set()
    lh: dict[int, int] = {}
    now = 0.0
    log = []
    for kind, value, down in plan:
        now += 0.07
        if kind == "chord":
            for n in VOICINGS[value]:
                if down:
                    lh[n] = lh.get(n, 0) + 1
                elif lh.get(n):
                    lh[n] -= 1
                msg = [0x90 if down else 0x80, n, 60 if down else 0]
                out = engine.handle(msg, now)
                assert out == [msg]
                log.append((msg, out))
            continue
        msg = [0x90 if down else 0x80, value, 90 if down else 0]
        scale = set(engine.follow_chord.scale)
        out = engine.handle(msg, now)
        log.append((msg, out))
        for m in out:
            if m[0] == 0x90:
                assert m[1] not in sounding, "a second note-on without its note-off"
                assert m[1] % 12 in scale, "off the played chord's scale"
                sounding.add(m[1])
            else:
                assert m[0] == 0x80 and m[1] in sounding, "a note-off for nothing"
                sounding.discard(m[1])
        if down:
            keys.add(value)
        elif value in keys:
            keys.discard(value)
    assert engine.errors == 0
    assert sorted(p for _, p in engine.sounding()) == sorted(sounding)
    return log, keys, {n for n, c in lh.items() if c}


@PROPS
@given(steps, st.sampled_from(["mono", "poly"]))
def test_no_stuck_notes_and_no_lost_note_off_across_chord_changes(plan, mode):
    engine = follow_engine(mode=mode)
    _, keys, _ = play(engine, plan)
    for key in sorted(keys):
        engine.handle([0x80, key, 0], 100.0)
    assert engine.sounding() == []
    assert engine.panic() == []


@PROPS
@given(steps, st.sampled_from(["mono", "poly"]))
def test_the_fast_path_sends_what_the_reference_path_sends(plan, mode):
    fast = follow_engine(mode=mode)
    slow = follow_engine(SlowEngine, mode=mode)
    log_fast, _, _ = play(fast, plan)
    log_slow, _, _ = play(slow, plan)
    assert log_fast == log_slow
    assert fast.follow_chord == slow.follow_chord
