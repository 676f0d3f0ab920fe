"""melodyflowd end to end: the daemon as a subprocess on a private JACK server, a second
client that sends MIDI clock and plays, and what comes out of `melodyflowd out`."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from melodyflowd.live.continuation import continue_line
from melodyflowd.music.theory import parse_chord
from tests.support.jack import (
    DAEMON_CMD,
    ClockSender,
    DaemonProcess,
    note_balance,
    note_ons,
    take,
    until_no_loss,
    write_bank,
)

BPM = 240                       # one 4/4 bar a second
CHART = 'title: ii-V-I test\ntempo: 120\ntime: 4/4\nchords: "| Dm7 | G7 | Cmaj7 | Em7 A7 |"\n'
BARS = [[("Dm7", 0, 4)], [("G7", 0, 4)], [("Cmaj7", 0, 4)], [("Em7", 0, 2), ("A7", 2, 2)]]
# Pitches that tell bars apart: bar 0 in the 60s, bar 1 in the 70s, ... Bar 1 has only
# two notes, so a third key in that bar goes on past them (up G mixolydian from 74 toward
# bar 2's first note, 84: 76).
NOTES = [
    [(62, 0.0, "Dm7"), (65, 1.0, "Dm7"), (69, 2.0, "Dm7"), (72, 3.0, "Dm7")],
    [(71, 0.0, "G7"), (74, 2.0, "G7")],
    [(84, 0.0, "Cmaj7"), (83, 1.0, "Cmaj7"), (79, 2.0, "Cmaj7"), (76, 3.0, "Cmaj7")],
    [(91, 0.0, "Em7"), (95, 1.0, "Em7"), (97, 2.0, "A7"), (100, 3.0, "A7")],
]
# A second bank: the same bars an octave lower, to see which bank is playing.
NOTES_LOW = [[(p - 12, b, c) for p, b, c in bar] for bar in NOTES]


def expected_pitches(bank: list, presses: list[tuple[int, float]]) -> list[int]:
    """The remapping contract as a reference: each key gets the next note of the phrase
    for the chord sounding at that moment; the position restarts at each chord change.
    Past the phrase's end the line goes on (live/continuation.py: this bank has one
    variation, so a walk along the chord-scale toward the next chord's first note)."""
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
        following = [p for p, b, c in bank[bar_index] if b > start and c != symbol] or \
            [p for p, _b, _c in bank[(bar_index + 1) % len(BARS)]]
        everything = [p for bar_notes in bank for p, _b, _c in bar_notes]
        line = continue_line(tuple(notes), [], parse_chord(symbol), following[0],
                             min(everything), max(everything))
        out.append(line[position % len(line)])
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
    tmp_path.mkdir(parents=True, exist_ok=True)
    chart = tmp_path / "iivi.yaml"
    chart.write_text(CHART)
    bank = write_bank(tmp_path / "bank.json", BARS, [notes], title="ii-V-I test", tempo=120)
    return chart, bank


def start_daemon(jack_server, workdir: Path, *args: str, **kwargs) -> DaemonProcess:
    """The daemon on the ii-V-I chart and its saved bank (write_files, in workdir), with
    more arguments `args`; kwargs go to DaemonProcess."""
    chart, bank = write_files(workdir)
    return DaemonProcess(jack_server, workdir,
                         ["--chart", str(chart), "--phrases", str(bank), *args], **kwargs)


PRESSES = [(0, 0.5), (0, 1.5), (0, 2.5), (1, 0.5), (1, 1.5), (1, 2.5),
           (2, 0.5), (2, 2.5), (3, 0.5), (3, 1.5), (3, 2.5), (3, 3.5)]


def ii_v_i(jack_server, tmp_path: Path) -> tuple[list[list[int]], list[int], DaemonProcess]:
    """The daemon, a clock at 240 bpm, the presses, taken again while JACK loses messages
    (until_no_loss). Returns what came out, the velocities played and the daemon."""

    def once(attempt: int):
        daemon = start_daemon(jack_server, tmp_path / f"take{attempt}")
        with take(daemon) as run, ClockSender(run.peer, BPM) as clock:
            clock.wait_until_beat(0.2)
            run.peer.send([0xB0, 7, 99])                         # a CC: passes through
            velocities = play(clock, run.peer, PRESSES)
        return (run.peer.messages(), velocities, daemon), run.loss

    return until_no_loss(once)


@pytest.mark.jack
def test_ii_v_i_with_midi_clock_plays_the_banks_notes_for_each_bar(jack_server, tmp_path):
    got, velocities, daemon = ii_v_i(jack_server, tmp_path)
    assert daemon.proc.returncode == 0, daemon.log()
    ons = [m for m in got if len(m) == 3 and m[0] == 0x90 and m[2] > 0]
    assert [m[1] for m in ons] == expected_pitches(NOTES, PRESSES), daemon.log()
    assert [m[1] for m in ons][3:6] == [71, 74, 76]         # bar 1: the line goes on
    assert [m[2] for m in ons] == velocities                 # the player's dynamics
    assert [0xB0, 7, 99] in got
    sounding, orphans = note_balance(got)
    assert sounding == {} and orphans == []
    lines = daemon.notify.lines()
    assert "READY=1" in lines and "STOPPING=1" in lines
    assert any(line.startswith("STATUS=") for line in lines)
    assert not any(daemon.in_name in p for p in jack_server.ports())   # ports closed


@pytest.mark.jack
def test_sigterm_with_keys_held_sends_note_offs_and_exits_0(jack_server, tmp_path):
    daemon = start_daemon(jack_server, tmp_path)
    with take(daemon, settle=None) as run:
        peer = run.peer
        peer.send([0x90, 60, 100])                 # channel 1, held
        peer.send([0x93, 64, 90])                  # channel 4, held
        assert peer.wait_for(lambda got: len(note_ons(got)) >= 2, timeout=3), daemon.log()
        assert note_balance(peer.messages())[0], "nothing was sounding before SIGTERM"
        status = daemon.stop(signal.SIGTERM)
        assert peer.wait_for(lambda got: not note_balance(got)[0], timeout=3)
        time.sleep(0.1)
        got = peer.messages()
    assert status == 0, daemon.log()
    sounding, orphans = note_balance(got)
    assert sounding == {} and orphans == [], got
    assert "STOPPING=1" in daemon.notify.lines()


@pytest.mark.jack
def test_sigint_stops_cleanly_too(jack_server, tmp_path):
    daemon = start_daemon(jack_server, tmp_path)
    try:
        daemon.wait_ready()
    finally:
        status = daemon.stop(signal.SIGINT)
    assert status == 0, daemon.log()
    assert "Traceback" not in daemon.log()


@pytest.mark.jack
def test_sighup_invalid_chart_keeps_the_old_one_and_a_new_bank_swaps_at_the_bar_line(
        jack_server, tmp_path):
    first = [(0, 0.5), (0, 1.5)]
    second = [(1, 2.5), (2, 0.5)]
    third = [(3, 2.5)]
    fourth = [(4, 0.5), (5, 0.5)]                    # the form loops: bars 0 and 1

    def once(attempt: int):
        workdir = tmp_path / f"take{attempt}"
        chart, bank = write_files(workdir)
        daemon = DaemonProcess(jack_server, workdir,
                               ["--chart", str(chart), "--phrases", str(bank)])
        with take(daemon) as run, ClockSender(run.peer, BPM) as clock:
            peer = run.peer
            play(clock, peer, first)
            # Bar 1: the chart file turns invalid; SIGHUP; the old chart keeps playing.
            clock.wait_until_beat(4.1)
            chart.write_text(CHART.replace("G7", "Q#lydian"))
            mark = len(daemon.lines)
            daemon.send_signal(signal.SIGHUP)
            assert daemon.wait_log("chart reload failed", timeout=2, after=mark), \
                daemon.log()
            play(clock, peer, second)
            # Bar 3: a valid chart and a new bank (an octave lower); SIGHUP mid-bar. The
            # rest of this bar is still the old bank; from the next bar line, the new.
            clock.wait_until_beat(12.2)
            write_files(workdir, NOTES_LOW)
            mark = len(daemon.lines)
            daemon.send_signal(signal.SIGHUP)
            assert daemon.wait_log("swaps in at the next bar line", timeout=2,
                                   after=mark), daemon.log()
            play(clock, peer, third)
            play(clock, peer, fourth)
        return (peer.messages(), daemon), run.loss

    got, daemon = until_no_loss(once)
    assert daemon.proc.returncode == 0, daemon.log()
    pitches = [p for _, p in note_ons(got)]
    old_part = expected_pitches(NOTES, first + second + third)
    new_part = expected_pitches(NOTES_LOW, fourth)
    assert pitches == old_part + new_part, daemon.log()
    assert note_balance(got) == ({}, [])
    assert "Q#lydian" in daemon.log()                         # the error names the bad token


@pytest.mark.jack
def test_control_cc_watchdog_stats_and_a_bad_config_on_sighup(jack_server, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("stats_interval: 0.3\n")
    daemon = start_daemon(jack_server, tmp_path, "--config", str(config),
                          env={"WATCHDOG_USEC": "600000"})
    with take(daemon, settle=None) as run:
        peer = run.peer
        # The regenerate control CC (20 by default): with a saved bank it rereads the file.
        mark = len(daemon.lines)
        peer.send([0xB0, 20, 127])
        assert daemon.wait_log("(control CC; saved bank", timeout=3, after=mark), daemon.log()
        # A changed engine setting applies live: phrase notes now go out on channel 5.
        config.write_text("stats_interval: 0.3\nengine:\n  out_channel: 5\n")
        mark = len(daemon.lines)
        daemon.send_signal(signal.SIGHUP)
        assert daemon.wait_log("engine settings updated", timeout=3, after=mark), daemon.log()
        # A config that became invalid: reported, the running one stays, play goes on.
        config.write_text("stats_interval: 0.3\nno_such_setting: 1\n")
        mark = len(daemon.lines)
        daemon.send_signal(signal.SIGHUP)
        assert daemon.wait_log("config reload failed", timeout=3, after=mark), daemon.log()
        assert "no_such_setting" in daemon.log()
        peer.send([0x90, 60, 100])
        peer.send([0x80, 60, 0])
        assert peer.wait_for(lambda got: len(note_ons(got)) == 1, timeout=3), daemon.log()
        assert note_ons(peer.messages())[0][0] == 4           # channel 5, still
        time.sleep(0.7)
    assert run.status == 0, daemon.log()
    assert [0xB0, 20, 127] not in peer.messages()               # control CCs are consumed
    assert daemon.notify.lines().count("WATCHDOG=1") >= 3       # every 0.2 s
    stats = [line for line in daemon.lines if "stats:" in line]
    assert len(stats) >= 3 and "notes remapped 1," in stats[-1], stats
    assert "RELOADING=1" in daemon.notify.lines()


@pytest.mark.jack
def test_a_variation_chosen_by_control_cc_is_logged(jack_server, tmp_path):
    chart, _ = write_files(tmp_path)
    bank = write_bank(tmp_path / "two.json", BARS, [NOTES, NOTES], title="two variations",
                      tempo=120)
    daemon = DaemonProcess(jack_server, tmp_path, ["--chart", str(chart), "--phrases", str(bank)])
    with take(daemon, settle=None) as run:
        mark = len(daemon.lines)
        run.peer.send([0xB0, 21, 127])                              # next variation
        assert daemon.wait_log("variation 2/2", timeout=3, after=mark), daemon.log()
        mark = len(daemon.lines)
        run.peer.send([0xB0, 22, 127])                              # previous variation
        assert daemon.wait_log("variation 1/2", timeout=3, after=mark), daemon.log()
    assert run.status == 0, daemon.log()


@pytest.mark.jack
def test_port_name_taken_is_exit_1_retry_with_one_line(jack_server, tmp_path):
    """Another melodyflowd holds the name (under systemd, often the one that is stopping):
    one line, and exit status 1, so that the service manager tries again."""
    chart, bank = write_files(tmp_path)
    first = DaemonProcess(jack_server, tmp_path, ["--chart", str(chart), "--phrases", str(bank)])
    try:
        first.wait_ready()
        second = subprocess.run(
            [*DAEMON_CMD, "--chart", str(chart), "--phrases", str(bank), "--backend", "jack",
             "--in-name", first.in_name, "--out-name", "someone else out"],
            env=jack_server.env, capture_output=True, text=True, timeout=60)
        assert first.proc.poll() is None                        # the first one plays on
    finally:
        first.stop()
    assert second.returncode == 1
    errors = [line for line in second.stderr.splitlines() if line.startswith("melodyflowd")]
    assert len(errors) == 1 and "already taken" in errors[0] and "--in-name" in errors[0]
    assert "Traceback" not in second.stderr


@pytest.mark.skipif(os.path.exists("/dev/snd/seq"), reason="this machine has an ALSA sequencer")
def test_alsa_without_a_sequencer_is_exit_2_suggesting_jack(tmp_path):
    chart, bank = write_files(tmp_path)
    result = subprocess.run([*DAEMON_CMD, "--chart", str(chart), "--phrases", str(bank),
                             "--backend", "alsa"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    ours = [line for line in result.stderr.splitlines() if line.startswith("melodyflowd")]
    assert len(ours) == 1 and "--backend jack" in ours[0] and "/dev/snd/seq" in ours[0]
    assert "Traceback" not in result.stderr
