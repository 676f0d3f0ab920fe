"""A real synth at the end of the chain: FluidSynth on a private JACK server, listening to
`melodyflowd out`, with Debian's General MIDI soundfont.

A player client sends MIDI clock and a key at each note of a ii-V-I phrase bank. What we
check is FluidSynth's own account of what it played: its verbose trace (`-v`) prints a
`noteon` line for every voice it starts and a `noteoff` line for every voice a note-off
releases, with the note's id. The bank's notes must be there, in order, with the player's
velocities, and every one of them released, the last included.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.support.jack import (
    ClockSender,
    DaemonProcess,
    JackServer,
    MidiPeer,
    OutputLines,
    write_bank,
)

pytestmark = pytest.mark.jack

FLUIDSYNTH = shutil.which("fluidsynth")
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")   # Debian: fluid-soundfont-gm

BPM = 240                                                  # one 4/4 bar a second
CHART = ('title: ii-V-I in C\ntempo: 120\ntime: 4/4\n'
         'chords: "| Dm7 | G7 | Cmaj7 | Cmaj7 |"\n')
BARS = [[("Dm7", 0, 4)], [("G7", 0, 4)], [("Cmaj7", 0, 4)], [("Cmaj7", 0, 4)]]
# A line a player might write over it (pitch, beat in the bar, chord).
NOTES = [
    [(62, 0.0, "Dm7"), (65, 1.0, "Dm7"), (69, 2.0, "Dm7"), (72, 3.0, "Dm7")],
    [(71, 0.0, "G7"), (67, 1.0, "G7"), (65, 2.0, "G7"), (62, 3.0, "G7")],
    [(64, 0.0, "Cmaj7"), (67, 1.0, "Cmaj7"), (71, 2.0, "Cmaj7"), (74, 3.0, "Cmaj7")],
    [(72, 0.0, "Cmaj7"), (76, 2.0, "Cmaj7")],
]

# fluidsynth: noteon<TAB>chan<TAB>key<TAB>vel<TAB>id<TAB>...   (one line per voice)
# fluidsynth: noteoff<TAB>chan<TAB>key<TAB>vel<TAB>id<TAB>...
TRACE = re.compile(r"^fluidsynth: (noteon|noteoff)\t(\d+)\t(\d+)\t(\d+)\t(\d+)\t")


class FluidSynth:
    """fluidsynth -v on the JACK server, its shell kept waiting on a pipe, stdout collected."""

    def __init__(self, server: JackServer) -> None:
        self.name = f"fsynth-{uuid.uuid4().hex[:6]}"
        self.server = server
        self.proc = subprocess.Popen(
            [FLUIDSYNTH, "-v", "-r", "48000", "-g", "0.2", "-a", "jack", "-m", "jack",
             "-o", f"midi.jack.id={self.name}", "-o", f"audio.jack.id={self.name}",
             str(SOUNDFONT)],
            env=server.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)
        self._output = OutputLines(self.proc)
        self.lines = self._output.lines

    def midi_port(self) -> str:
        self.server.wait_for_ports([f"{self.name}:midi"], timeout=30, proc=self.proc)
        return next(p for p in self.server.ports() if p.startswith(f"{self.name}:midi"))

    def notes(self) -> tuple[list[tuple[int, int, int, int]], set[int]]:
        """([(note id, channel, key, velocity)] in the order started, {ids released})."""
        started: dict[int, tuple[int, int, int, int]] = {}
        released: set[int] = set()
        for line in list(self.lines):
            match = TRACE.match(line)
            if not match:
                continue
            kind, chan, key, vel, note_id = match.groups()
            if kind == "noteon":
                started.setdefault(int(note_id), (int(note_id), int(chan), int(key), int(vel)))
            else:
                released.add(int(note_id))
        return sorted(started.values()), released

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._output.close()


@pytest.fixture
def fluidsynth(jack_server: JackServer):
    if FLUIDSYNTH is None:
        pytest.skip("fluidsynth is not installed (apt-get install fluidsynth)")
    if not SOUNDFONT.exists():
        pytest.skip(f"{SOUNDFONT} is missing (apt-get install fluid-soundfont-gm)")
    synth = FluidSynth(jack_server)
    try:
        yield synth
    finally:
        synth.stop()


def jack_port(server: JackServer, name: str) -> str:
    return next(p for p in server.ports() if p.startswith(f"{name}:"))


def test_fluidsynth_plays_the_banks_notes_in_order_and_releases_the_last(
        jack_server: JackServer, fluidsynth: FluidSynth, tmp_path: Path) -> None:
    chart = tmp_path / "ii-v-i.yaml"
    chart.write_text(CHART)
    bank = write_bank(tmp_path / "bank.json", BARS, [NOTES], title="ii-V-I in C", tempo=120)
    synth_port = fluidsynth.midi_port()
    daemon = DaemonProcess(jack_server, tmp_path,
                           ["--chart", str(chart), "--phrases", str(bank)])
    player = None
    try:
        daemon.wait_ready()
        subprocess.run(["jack_connect", jack_port(jack_server, daemon.out_name), synth_port],
                       env=jack_server.env, check=True, capture_output=True)
        player = MidiPeer(to_port=daemon.in_name, name="mfd player")
        # Any keys, any dynamics: the rhythm is the player's, the pitches the bank's.
        presses = [(bar, beat) for bar, notes in enumerate(NOTES) for _, beat, _ in notes]
        velocities = []
        with ClockSender(player, BPM) as clock:
            for i, (bar, beat) in enumerate(presses):
                key, velocity = 40 + (i * 5) % 40, 40 + (i * 11) % 80
                clock.wait_until_beat(bar * 4 + beat + 0.1)
                player.send([0x90, key, velocity])
                clock.wait_until_beat(bar * 4 + beat + 0.4)
                player.send([0x80, key, 0])
                velocities.append(velocity)
        expected = [pitch for bar in NOTES for pitch, _, _ in bar]
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            started, released = fluidsynth.notes()
            if len(started) >= len(expected) and {n[0] for n in started} <= released:
                break
            time.sleep(0.05)
    finally:
        if player is not None:
            player.close()
        status = daemon.stop()
    assert status == 0, daemon.log()
    started, released = fluidsynth.notes()
    trace = "\n".join(line for line in fluidsynth.lines if TRACE.match(line))
    assert [key for _, _, key, _ in started] == expected, trace + "\n" + daemon.log()
    assert [vel for _, _, _, vel in started] == velocities, trace
    assert {chan for _, chan, _, _ in started} == {0}
    assert {note_id for note_id, _, _, _ in started} <= released, trace   # none left sounding
    assert started[-1][0] in released                                      # the last, too
