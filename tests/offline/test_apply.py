"""`melodyflow apply`: a recorded performance through the engine, offline; and the same
messages through the daemon on a private JACK server give the same notes."""

from __future__ import annotations

import os
from pathlib import Path

import mido
import pytest
from click.testing import CliRunner

from melodyflowd.cli import tools_main
from melodyflowd.music.chart import load_chart
from melodyflowd.music.phrases import load_bank
from melodyflowd.offline.apply import apply_performance
from melodyflowd.settings import EngineSettings
from tests.service.test_daemon_e2e import (
    BPM,
    NOTES,
    PRESSES,
    expected_pitches,
    ii_v_i,
    write_files,
)
from tests.support.jack import note_balance

TPB = 480


def performance(presses=PRESSES, bpm: float = BPM, hold: float = 0.25, *,
                tempo_change: tuple[float, float] | None = None, extra=()) -> mido.MidiFile:
    """The e2e test's take as a file: CC 7 at beat 0.2, then each press with the key and
    velocity the take uses, released `hold` beats later. tempo_change = (beat, bpm)."""
    events = [(round(0.2 * TPB), mido.Message("control_change", control=7, value=99))]
    for i, (bar, beat) in enumerate(presses):
        key, velocity = 48 + (i * 7) % 36, 30 + (i * 13) % 90
        at = round((bar * 4 + beat) * TPB)
        events.append((at, mido.Message("note_on", note=key, velocity=velocity)))
        events.append((at + round(hold * TPB), mido.Message("note_off", note=key, velocity=0)))
    events += list(extra)
    tempos = [(0, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm)))]
    if tempo_change:
        tempos.append((round(tempo_change[0] * TPB),
                       mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo_change[1]))))
    track = mido.MidiTrack()
    previous = 0
    for tick, msg in sorted(tempos + events, key=lambda e: e[0]):
        track.append(msg.copy(time=tick - previous))
        previous = tick
    midi = mido.MidiFile(type=0, ticks_per_beat=TPB)
    midi.tracks.append(track)
    return midi


def channel_messages(midi: mido.MidiFile) -> list[list[int]]:
    return [msg.bytes() for msg in mido.merge_tracks(midi.tracks)
            if not msg.is_meta and msg.bytes()[0] < 0xF0]


def ons(messages) -> list[tuple[int, int]]:
    return [(m[1], m[2]) for m in messages if m[0] & 0xF0 == 0x90 and m[2] > 0]


@pytest.fixture
def files(tmp_path):
    chart, bank = write_files(tmp_path)
    return load_chart(str(chart)), load_bank(str(bank)), chart, bank


def test_each_press_plays_the_next_phrase_note_with_its_velocity(files):
    chart, bank, *_ = files
    out = apply_performance(performance(), chart, bank, EngineSettings())
    got = channel_messages(out)
    assert [p for p, _ in ons(got)] == expected_pitches(NOTES, PRESSES)
    assert [v for _, v in ons(got)] == [30 + (i * 13) % 90 for i in range(len(PRESSES))]
    assert [0xB0, 7, 99] in got
    assert note_balance(got) == ({}, [])
    assert out.ticks_per_beat == TPB and out.type == 0
    assert [m for m in out.tracks[0] if m.type == "set_tempo"][0].tempo == mido.bpm2tempo(BPM)


def test_notes_keep_their_ticks(files):
    chart, bank, *_ = files
    source = performance()
    out = apply_performance(source, chart, bank, EngineSettings())

    def note_ticks(midi):
        tick, found = 0, []
        for msg in midi.tracks[0]:
            tick += msg.time
            if msg.type in ("note_on", "note_off"):
                found.append((tick, msg.type))
        return found

    assert note_ticks(out) == note_ticks(source)


def test_the_files_tempo_map_drives_the_chart_not_the_charts_tempo(files):
    chart, bank, *_ = files
    steady = apply_performance(performance(bpm=240), chart, bank, EngineSettings())
    # The chart says 120 bpm; the file runs at 70 bpm then 300: bars are still bars.
    changing = apply_performance(performance(bpm=70, tempo_change=(5.0, 300)), chart, bank,
                                 EngineSettings())
    assert ons(channel_messages(changing)) == ons(channel_messages(steady))
    assert [p for p, _ in ons(channel_messages(steady))] == expected_pitches(NOTES, PRESSES)


def test_start_bar_makes_tick_0_beat_1_of_that_bar(files):
    chart, bank, *_ = files
    presses = [(0, 0.5), (0, 1.5), (1, 0.5)]
    out = apply_performance(performance(presses), chart, bank, EngineSettings(), start_bar=3)
    shifted = [(bar + 2, beat) for bar, beat in presses]       # bar 3 of the chart is index 2
    assert [p for p, _ in ons(channel_messages(out))] == expected_pitches(NOTES, shifted)


def test_untouched_events_pass_unchanged(files):
    chart, bank, *_ = files
    bass = [(0, mido.Message("note_on", channel=0, note=36, velocity=70)),
            (TPB, mido.Message("note_off", channel=0, note=36, velocity=0)),
            (10, mido.Message("program_change", channel=2, program=5)),
            (20, mido.Message("pitchwheel", channel=0, pitch=1000)),
            (30, mido.Message("sysex", data=[1, 2, 3])),
            (40, mido.MetaMessage("marker", text="here"))]
    source = performance(extra=bass)
    out = apply_performance(source, chart, bank, EngineSettings(split=40))
    got = channel_messages(out)
    assert [0x90, 36, 70] in got and [0x80, 36, 0] in got           # below the split
    assert [0xC2, 5] in got
    assert mido.Message("pitchwheel", channel=0, pitch=1000).bytes() in got
    merged = list(mido.merge_tracks(out.tracks))
    assert any(m.type == "sysex" and list(m.data) == [1, 2, 3] for m in merged)
    assert any(m.type == "marker" and m.text == "here" for m in merged)
    remapped = [p for p, _ in ons(got) if p != 36]
    assert remapped == expected_pitches(NOTES, PRESSES)


def test_a_note_left_hanging_gets_its_note_off(files):
    chart, bank, *_ = files
    source = performance(presses=[(0, 0.5)], hold=0.25)
    source.tracks[0] = mido.MidiTrack([m for m in source.tracks[0]
                                       if m.type != "note_off"])
    out = apply_performance(source, chart, bank, EngineSettings())
    assert note_balance(channel_messages(out)) == ({}, [])


def test_cli_writes_the_file_deterministically_and_atomically(files, tmp_path):
    _chart, _bank, chart_path, bank_path = files
    take = tmp_path / "take.mid"
    performance().save(str(take))
    outs = []
    for name in ("a.mid", "b.mid"):
        out = tmp_path / "out" / name
        out.parent.mkdir(exist_ok=True)
        result = CliRunner().invoke(tools_main, ["apply", str(take), "--chart", str(chart_path),
                                                 "--phrases", str(bank_path), "--out",
                                                 str(out)], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert f"wrote {out}" in result.stdout
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    assert sorted(os.listdir(tmp_path / "out")) == ["a.mid", "b.mid"]    # no temp file
    pitches = [p for p, _ in ons(channel_messages(mido.MidiFile(str(tmp_path / "out/a.mid"))))]
    assert pitches == expected_pitches(NOTES, PRESSES)


@pytest.mark.parametrize("args, message", [
    (["missing.mid"], "MIDI file not found"),
    (["take.mid", "--start-bar", "0"], "--start-bar"),
])
def test_cli_user_errors_are_one_line_and_status_2(files, tmp_path, args, message):
    _chart, _bank, chart_path, bank_path = files
    performance().save(str(tmp_path / "take.mid"))
    old = Path.cwd()
    os.chdir(tmp_path)
    try:
        result = CliRunner().invoke(tools_main, ["apply", *args, "--chart", str(chart_path),
                                                 "--phrases", str(bank_path), "--out",
                                                 "out.mid"])
    finally:
        os.chdir(old)
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "out.mid").exists()


def test_cli_not_a_midi_file(files, tmp_path):
    _chart, _bank, chart_path, bank_path = files
    bad = tmp_path / "bad.mid"
    bad.write_text("hello")
    result = CliRunner().invoke(tools_main, ["apply", str(bad), "--chart", str(chart_path),
                                             "--phrases", str(bank_path), "--out",
                                             str(tmp_path / "out.mid")])
    assert result.exit_code == 2
    assert "not a standard MIDI file" in result.output
    assert result.output.count("\n") == 1


@pytest.mark.jack
def test_apply_gives_the_notes_the_daemon_plays_through_jack(jack_server, tmp_path):
    # The daemon, fed the take live (MIDI clock at 240 bpm from Start, the CC, the presses)
    got, velocities, daemon = ii_v_i(jack_server, tmp_path)
    live = [list(m) for m in got if len(m) == 3 and m[0] < 0xF0]
    # ... and apply, fed the same messages as a file.
    chart, bank = write_files(tmp_path / "files")
    out = apply_performance(performance(), load_chart(str(chart)), load_bank(str(bank)),
                            EngineSettings())
    offline = channel_messages(out)
    assert ons(offline) == ons(live), daemon.log()
    assert offline == live
    assert [v for _, v in ons(offline)] == velocities
