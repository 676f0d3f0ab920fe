"""melodyflowd end to end: the daemon as a subprocess on a private JACK server, a second
client that sends MIDI clock and plays, and what comes out of `melodyflowd out`."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from support_jack import ClockSender, DaemonProcess, note_balance, note_ons, write_bank

pytestmark = pytest.mark.jack

BPM = 240                       # one 4/4 bar a second
CHART = 'title: ii-V-I test\ntempo: 120\ntime: 4/4\nchords: "| Dm7 | G7 | Cmaj7 | Em7 A7 |"\n'
BARS = [[("Dm7", 0, 4)], [("G7", 0, 4)], [("Cmaj7", 0, 4)], [("Em7", 0, 2), ("A7", 2, 2)]]
# Pitches that tell bars apart: bar 0 in the 60s, bar 1 in the 70s, ... Bar 1 has only
# two notes, so a third key in that bar wraps to its first note.
NOTES = [
    [(62, 0.0, "Dm7"), (65, 1.0, "Dm7"), (69, 2.0, "Dm7"), (72, 3.0, "Dm7")],
    [(71, 0.0, "G7"), (74, 2.0, "G7")],
    [(84, 0.0, "Cmaj7"), (83, 1.0, "Cmaj7"), (79, 2.0, "Cmaj7"), (76, 3.0, "Cmaj7")],
    [(91, 0.0, "Em7"), (95, 1.0, "Em7"), (97, 2.0, "A7"), (100, 3.0, "A7")],
]
# A second bank: the same bars an octave lower, to see which bank is playing.
NOTES_LOW = [[(p - 12, b, c) for p, b, c in bar] for bar in NOTES]


def expected_pitches(bank: list, presses: list[tuple[int, float]]) -> list[int]:
    """The contract of issue 3 as a reference: each key gets the next note of the phrase
    for the chord sounding at that moment; the position restarts at each chord change and
    wraps when the phrase runs out."""
    out: list[int] = []
    last_span = None
    position = 0
    for bar, beat in presses:
        bar_index = bar % len(BARS)
        symbol, start, _ = next(s for s in BARS[bar_index] if s[1] <= beat < s[1] + s[2])
        span = (bar, symbol, start)
        position = position + 1 if span == last_span else 0
        last_span = span
        notes = [p for p, b, c in bank[bar_index] if c == symbol and b >= start]
        out.append(notes[position % len(notes)])
    return out


def play(clock: ClockSender, peer, presses: list[tuple[int, float]], hold: float = 0.25
         ) -> list[int]:
    """Press a key at each (bar, beat), release it `hold` beats later; keys and velocities
    vary (rhythm only: any key). Returns the velocities played."""
    velocities = []
    for i, (bar, beat) in enumerate(presses):
        key, velocity = 48 + (i * 7) % 36, 30 + (i * 13) % 90
        clock.wait_until_beat(bar * 4 + beat)
        peer.send([0x90, key, velocity])
        clock.wait_until_beat(bar * 4 + beat + hold)
        peer.send([0x80, key, 0])
        velocities.append(velocity)
    return velocities


def write_files(tmp_path: Path, notes=NOTES) -> tuple[Path, Path]:
    chart = tmp_path / "iivi.yaml"
    chart.write_text(CHART)
    bank = write_bank(tmp_path / "bank.json", BARS, [notes], title="ii-V-I test", tempo=120)
    return chart, bank


def test_ii_v_i_with_midi_clock_plays_the_banks_notes_for_each_bar(jack_server, tmp_path):
    chart, bank = write_files(tmp_path)
    daemon = DaemonProcess(jack_server, tmp_path, ["--chart", str(chart), "--phrases", str(bank)])
    peer = None
    try:
        daemon.wait_ready()
        peer = daemon.peer()
        presses = [(0, 0.5), (0, 1.5), (0, 2.5), (1, 0.5), (1, 1.5), (1, 2.5),
                   (2, 0.5), (2, 2.5), (3, 0.5), (3, 1.5), (3, 2.5), (3, 3.5)]
        clock = ClockSender(peer, BPM).start()
        try:
            clock.wait_until_beat(0.2)
            peer.send([0xB0, 7, 99])                         # a CC: passes through
            velocities = play(clock, peer, presses)
        finally:
            clock.stop(send_stop=True)
        assert peer.wait_for(lambda got: not note_balance(got)[0], timeout=3)
        got = peer.messages()
    finally:
        if peer is not None:
            peer.close()
        status = daemon.stop()
    assert status == 0, daemon.log()
    ons = [m for m in got if len(m) == 3 and m[0] == 0x90 and m[2] > 0]
    assert [m[1] for m in ons] == expected_pitches(NOTES, presses), daemon.log()
    assert [m[2] for m in ons] == velocities                 # the player's dynamics
    assert [0xB0, 7, 99] in got
    sounding, orphans = note_balance(got)
    assert sounding == {} and orphans == []
    lines = daemon.notify.lines()
    assert "READY=1" in lines and "STOPPING=1" in lines
    assert any(line.startswith("STATUS=") for line in lines)
    assert not any(daemon.in_name in p for p in jack_server.ports())   # ports closed


def test_sigterm_with_keys_held_sends_note_offs_and_exits_0(jack_server, tmp_path):
    chart, bank = write_files(tmp_path)
    daemon = DaemonProcess(jack_server, tmp_path, ["--chart", str(chart), "--phrases", str(bank)])
    peer = None
    try:
        daemon.wait_ready()
        peer = daemon.peer()
        peer.send([0x90, 60, 100])                 # channel 1, held
        peer.send([0x93, 64, 90])                  # channel 4, held
        assert peer.wait_for(lambda got: len(note_ons(got)) >= 2, timeout=3), daemon.log()
        assert note_balance(peer.messages())[0], "nothing was sounding before SIGTERM"
        status = daemon.stop(signal.SIGTERM)
        assert peer.wait_for(lambda got: not note_balance(got)[0], timeout=3)
        time.sleep(0.1)
        got = peer.messages()
    finally:
        if peer is not None:
            peer.close()
        daemon.stop()
    assert status == 0, daemon.log()
    sounding, orphans = note_balance(got)
    assert sounding == {} and orphans == [], got
    assert "STOPPING=1" in daemon.notify.lines()


def test_sigint_stops_cleanly_too(jack_server, tmp_path):
    chart, bank = write_files(tmp_path)
    daemon = DaemonProcess(jack_server, tmp_path, ["--chart", str(chart), "--phrases", str(bank)])
    try:
        daemon.wait_ready()
    finally:
        status = daemon.stop(signal.SIGINT)
    assert status == 0, daemon.log()
    assert "Traceback" not in daemon.log()


def test_sighup_invalid_chart_keeps_the_old_one_and_a_new_bank_swaps_at_the_bar_line(
        jack_server, tmp_path):
    chart, bank = write_files(tmp_path)
    daemon = DaemonProcess(jack_server, tmp_path, ["--chart", str(chart), "--phrases", str(bank)])
    peer = None
    try:
        daemon.wait_ready()
        peer = daemon.peer()
        clock = ClockSender(peer, BPM).start()
        try:
            first = [(0, 0.5), (0, 1.5)]
            play(clock, peer, first)
            # Bar 1: the chart file turns invalid; SIGHUP; the old chart keeps playing.
            clock.wait_until_beat(4.1)
            chart.write_text(CHART.replace("G7", "Q#lydian"))
            mark = len(daemon.lines)
            daemon.send_signal(signal.SIGHUP)
            assert daemon.wait_log("chart reload failed", timeout=2, after=mark), daemon.log()
            second = [(1, 2.5), (2, 0.5)]
            play(clock, peer, second)
            # Bar 3: a valid chart and a new bank (an octave lower); SIGHUP mid-bar. The rest
            # of this bar is still the old bank; from the next bar line on, the new one.
            clock.wait_until_beat(12.2)
            write_files(tmp_path, NOTES_LOW)
            mark = len(daemon.lines)
            daemon.send_signal(signal.SIGHUP)
            assert daemon.wait_log("swaps in at the next bar line", timeout=2, after=mark), \
                daemon.log()
            third = [(3, 2.5)]
            fourth = [(4, 0.5), (5, 0.5)]                    # the form loops: bars 0 and 1
            play(clock, peer, third)
            play(clock, peer, fourth)
        finally:
            clock.stop(send_stop=True)
        assert peer.wait_for(lambda got: not note_balance(got)[0], timeout=3)
        got = peer.messages()
    finally:
        if peer is not None:
            peer.close()
        status = daemon.stop()
    assert status == 0, daemon.log()
    assert daemon.proc.returncode == 0
    pitches = [p for _, p in note_ons(got)]
    old_part = expected_pitches(NOTES, first + second + third)
    new_part = expected_pitches(NOTES_LOW, fourth)
    assert pitches == old_part + new_part, daemon.log()
    assert note_balance(got) == ({}, [])
    assert "Q#lydian" in daemon.log()                         # the error names the bad token
