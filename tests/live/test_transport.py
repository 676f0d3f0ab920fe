"""Transport: MIDI clock, SPP, Start/Continue/Stop, internal clock. Time is passed in."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from melodyflowd.live.transport import CLOCK, CONTINUE, SONG_POSITION, START, STOP, Transport


def send_clock(t: Transport, start: float, bpm: float, ticks: int) -> float:
    """Feed `ticks` clock ticks at `bpm` from time `start`; returns the time of the last."""
    dt = 60.0 / bpm / 24
    now = start
    for i in range(ticks):
        now = start + i * dt
        t.feed([CLOCK], now)
    return now


def test_nothing_known_before_start() -> None:
    t = Transport(120, 4)
    assert t.beat_at(5.0) is None
    assert t.position(5.0) is None
    assert not t.running and not t.started


def test_internal_clock_from_first_note() -> None:
    t = Transport(120, 4)
    t.ensure_running(10.0)
    assert t.running and not t.clocked
    assert t.beat_at(10.0) == 0.0
    assert t.beat_at(10.5) == pytest.approx(1.0)        # 120 bpm: 2 beats a second
    assert t.position(12.25) == (1, pytest.approx(0.5))   # beat 4.5 -> bar 1, beat 0.5
    t.ensure_running(11.0)                                # already running: no restart
    assert t.beat_at(11.0) == pytest.approx(2.0)
    assert t.beat_at(9.0) == 0.0                          # stale time: never before anchor


def test_internal_clock_at_start_without_clock() -> None:
    t = Transport(90, 4)
    assert t.feed([START], 1.0)
    assert t.running and not t.clocked
    assert t.beat_at(1.05) == 0.0                         # a grace for a first tick ...
    assert t.beat_at(3.0) == pytest.approx(3.0)           # ... then 90 bpm = 1.5 beats/s


def test_ticks_that_start_with_start_count_from_the_downbeat() -> None:
    t = Transport(90, 4)                                  # the DAW plays at 120
    t.feed([START], 1.0)                                  # no clock before it
    t.feed([CLOCK], 1.03)                                 # the downbeat
    assert t.clocked and t.beat_at(1.03) == 0.0
    last = send_clock(t, 1.03 + 0.5 / 24, 120, 24)
    assert t.beat_at(last) == pytest.approx(1.0)


def test_clock_drives_position_and_tempo() -> None:
    t = Transport(100, 4)
    send_clock(t, 0.0, 150, 10)                           # clock while stopped: tempo only
    assert t.beat_at(0.3) is None
    assert t.clock_tempo == pytest.approx(150)
    start = 0.4
    t.feed([START], start)
    assert t.clocked
    assert t.beat_at(start + 0.01) == 0.0                 # waits for the first tick
    dt = 60 / 150 / 24
    last = send_clock(t, start + 0.002, 150, 49)          # tick 0 is the downbeat
    assert t.beat_at(last) == pytest.approx(2.0)          # 48 ticks later = 2 beats
    assert t.tempo == pytest.approx(150)
    # Between ticks it moves on, but never more than one tick ahead.
    assert t.beat_at(last + dt / 2) == pytest.approx(2.0 + 1 / 48)
    assert t.beat_at(last + 5.0) == pytest.approx(2.0 + 1 / 24)
    assert t.clock_ticks == 59


def test_clock_tempo_follows_changes_smoothly() -> None:
    t = Transport(120, 4)
    t.feed([START], 0.0)
    last = send_clock(t, 0.0, 120, 48)
    assert t.tempo == pytest.approx(120)
    # Jittered ticks at 140 bpm: the estimate converges and stays close.
    dt = 60 / 140 / 24
    now = last
    for i in range(200):
        now += dt + (0.0004 if i % 2 else -0.0004)
        t.feed([CLOCK], now)
    assert t.tempo == pytest.approx(140, rel=0.01)
    # A long pause between two ticks is not a tempo.
    t.feed([CLOCK], now + 3.0)
    assert t.tempo == pytest.approx(140, rel=0.01)


def test_stop_freezes_continue_resumes() -> None:
    t = Transport(120, 4)
    t.feed([START], 0.0)
    last = send_clock(t, 0.0, 120, 25)                    # 24 ticks after the downbeat
    assert t.beat_at(last) == pytest.approx(1.0)
    assert t.feed([STOP], last + 0.001)
    assert not t.running
    frozen = t.beat_at(last + 0.001)
    assert frozen == pytest.approx(1.0)
    send_clock(t, last + 0.02, 120, 30)                   # ticks while stopped
    assert t.beat_at(last + 2.0) == frozen
    t.ensure_running(last + 2.0)                          # a note does not restart it
    assert not t.running and t.beat_at(last + 2.1) == frozen
    t.feed([CONTINUE], 10.0)
    assert t.running
    assert t.beat_at(10.0) == pytest.approx(frozen)
    t.feed([CLOCK], 10.0)                                 # downbeat of the continue
    t.feed([CLOCK], 10.0 + 1 / 48)
    assert t.beat_at(10.0 + 1 / 48) == pytest.approx(frozen + 1 / 24)


def test_song_position_pointer() -> None:
    t = Transport(120, 4)
    # SPP 0x0041 = 65 sixteenths = 16.25 beats
    assert t.feed([SONG_POSITION, 65, 0], 1.0)
    assert t.beat_at(2.0) == pytest.approx(16.25)
    assert t.position(2.0) == (4, pytest.approx(0.25))
    assert not t.running
    # 14-bit value: msb counts 128 sixteenths.
    t.feed([SONG_POSITION, 0, 1], 1.0)
    assert t.beat_at(1.0) == pytest.approx(32.0)
    t.feed([CONTINUE], 2.0)
    assert t.beat_at(2.5) == pytest.approx(33.0)          # no clock: internal, 120 bpm


def test_start_resets_to_zero() -> None:
    t = Transport(120, 4)
    t.feed([SONG_POSITION, 40, 0], 0.0)
    t.feed([START], 0.0)
    assert t.beat_at(0.5) == pytest.approx(1.0)


def test_ticks_after_internal_start_carry_on() -> None:
    t = Transport(120, 4)
    t.ensure_running(0.0)
    assert t.beat_at(1.0) == pytest.approx(2.0)
    t.feed([CLOCK], 1.0)                                  # clock appears: no jump back
    assert t.clocked
    assert t.beat_at(1.0) == pytest.approx(2.0)
    t.feed([CLOCK], 1.0 + 1 / 48)
    assert t.beat_at(1.0 + 1 / 48) == pytest.approx(2.0 + 1 / 24)


def test_clock_without_start_follows_from_first_note() -> None:
    t = Transport(100, 4)
    last = send_clock(t, 0.0, 120, 12)
    t.ensure_running(last + 0.001)
    assert t.clocked and t.beat_at(last + 0.001) == 0.0
    send_clock(t, last + 1 / 48, 120, 24)
    assert t.beat_at(last + 24 / 48) == pytest.approx(1.0)


def test_malformed_and_other_messages_ignored() -> None:
    t = Transport(120, 4)
    for msg in ([], [SONG_POSITION], [SONG_POSITION, 200, 0], [0x90, 60, 100], [0xB0, 7]):
        assert not t.feed(msg, 0.0)
    assert t.beat_at(0.0) is None


def test_set_tempo_keeps_position() -> None:
    t = Transport(120, 4)
    t.ensure_running(0.0)
    t.set_tempo(60, now=1.0)                              # at beat 2
    assert t.beat_at(1.0) == pytest.approx(2.0)
    assert t.beat_at(2.0) == pytest.approx(3.0)
    with pytest.raises(ValueError):
        Transport(0)


def test_reset() -> None:
    t = Transport(120, 4)
    t.ensure_running(0.0)
    t.reset()
    assert t.beat_at(1.0) is None


@settings(max_examples=100, deadline=None)
@given(st.floats(60, 240), st.lists(st.floats(-0.3, 0.3), min_size=2, max_size=120),
       st.lists(st.floats(0, 1), max_size=30))
def test_clock_position_never_goes_back(bpm: float, jitter: list[float],
                                        probes: list[float]) -> None:
    """Jittered ticks after Start: at every tick the position is exactly ticks/24 beats,
    and probed between ticks it never goes backwards."""
    t = Transport(120, 4)
    dt = 60 / bpm / 24
    now = 1.0
    t.feed([START], now - 0.001)
    last_beat = 0.0
    times = []
    for j in jitter:
        now += dt * (1 + j)
        times.append(now)
    probe_at = sorted(times[0] + p * (times[-1] - times[0]) for p in probes)
    events = sorted([(x, 0) for x in times] + [(x, 1) for x in probe_at])
    ticks = -1
    for when, kind in events:
        if kind == 0:
            t.feed([CLOCK], when)
            ticks += 1
            assert t.beat_at(when) == pytest.approx(ticks / 24)
        beat = t.beat_at(when)
        assert beat >= last_beat - 1e-9
        last_beat = beat
    assert t.tempo == pytest.approx(bpm, rel=0.5)


# --- the `line` snapshot: beat_at from it equals the formula on the full state -----------

def reference_beat(t: Transport, now: float) -> float | None:
    """beat_at as written before `line` existed: straight from the transport's state."""
    if not t._started:
        return None
    anchor = t._base + t._ticks * (1.0 / 24)
    if not t._running:
        return anchor
    if t._await_tick and (t._clocked or now - t._anchor_time <= 0.1):
        return anchor
    ahead = (now - t._anchor_time) * t.tempo / 60.0
    if ahead <= 0.0:
        return anchor
    if t._clocked and ahead > 1.0 / 24:
        ahead = 1.0 / 24
    return anchor + ahead


transport_step = st.one_of(
    st.tuples(st.sampled_from(["clock"] * 6 + ["start", "continue", "stop", "spp",
                                                "ensure", "tempo", "reset"]),
              st.floats(0.0, 0.3), st.integers(0, 300), st.floats(30, 300)))


def apply_step(t: Transport, kind: str, value: int, bpm: float, now: float) -> None:
    """One generated transport step: a message fed, or a direct call."""
    if kind == "clock":
        t.feed([CLOCK], now)
    elif kind == "start":
        t.feed([START], now)
    elif kind == "continue":
        t.feed([CONTINUE], now)
    elif kind == "stop":
        t.feed([STOP], now)
    elif kind == "spp":
        t.feed([SONG_POSITION, value & 127, value >> 7], now)
    elif kind == "ensure":
        t.ensure_running(now)
    elif kind == "tempo":
        t.set_tempo(bpm, now)
    else:
        t.reset()


@settings(max_examples=300, deadline=None)
@given(st.lists(transport_step, max_size=60), st.lists(st.floats(-0.2, 2.0), min_size=3,
                                                        max_size=3))
def test_line_gives_the_same_beat_as_the_state(steps, probes) -> None:
    t = Transport(120, 4)
    now = 100.0
    for kind, gap, value, bpm in steps:
        now += gap
        apply_step(t, kind, value, bpm, now)
        for dt in probes:
            assert t.beat_at(now + dt) == reference_beat(t, now + dt)
        if t.line is not None:
            assert t.line[2] == t.tempo


class ReferenceTicks(Transport):
    """Every tick through the general _tick (what tick() did before its straight line)."""

    __slots__ = ()

    def tick(self, now: float) -> None:
        self._tick(now)


def transport_state(t: Transport) -> tuple:
    return (t.line, t.clock_ticks, t._interval, t._last_clock, t._ticks, t._anchor_time,
            t._base, t._running, t._clocked, t._await_tick, t._started, t.tempo)


@settings(max_examples=300, deadline=None)
@given(st.lists(transport_step, max_size=80))
def test_tick_straight_line_matches_the_general_tick(steps) -> None:
    fast, ref = Transport(120, 4), ReferenceTicks(120, 4)
    now = 100.0
    for kind, gap, value, bpm in steps:
        now += gap / 10 if kind == "clock" else gap
        for t in (fast, ref):
            apply_step(t, kind, value, bpm, now)
        assert transport_state(fast) == transport_state(ref)
