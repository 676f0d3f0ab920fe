"""`melodyflow apply --follow`: a recorded two-handed performance (left-hand voicings of a
ii-V-I in three keys below the split, a right-hand figure above it) through the engine in
follow mode, offline; and the same messages through the daemon in follow mode on a private
JACK server give the same notes."""

from __future__ import annotations

import time
from pathlib import Path

import mido
import pytest
from click.testing import CliRunner

from melodyflowd.cli import tools_main
from melodyflowd.live.follow import build_follow
from melodyflowd.music.follow import FIRST_SCALES, LATER_SCALES
from melodyflowd.music.theory import parse_chord
from melodyflowd.offline.apply import apply_performance
from melodyflowd.settings import EngineSettings
from tests.service.test_follow_e2e import PROGRESSIONS, RHYTHM, RIGHT_KEYS, follow_config
from tests.support.follow_bank import make_follow_bank
from tests.support.jack import DaemonProcess, note_balance, take, until_no_loss

TPB = 480
TICKS_A_SECOND = TPB * 2                 # 120 bpm
CHORD_SECONDS = 1.5                      # one chord of the take every 1.5 s
LEAD = 0.05                              # the right hand comes in after the left
LENGTH = 0.08                            # each right-hand note's length


def take_events() -> list[tuple[float, list[int]]]:
    """The take as (seconds, message): the left hand on channel 1, the right on 2."""
    events: list[tuple[float, list[int]]] = []
    chords = [voicing for progression in PROGRESSIONS for _, voicing in progression]
    for c, voicing in enumerate(chords):
        t = c * CHORD_SECONDS
        events += [(t, [0x90, note, 70]) for note in voicing]
        for at, key in zip(RHYTHM, RIGHT_KEYS, strict=True):
            events.append((t + LEAD + at, [0x91, key, 90]))
            events.append((t + LEAD + at + LENGTH, [0x81, key, 0]))
        events += [(t + 1.0, [0x80, note, 0]) for note in voicing]
    return events


def two_handed() -> mido.MidiFile:
    """The take as a type 1 file: a track each hand."""
    tracks: list[list[tuple[int, mido.Message]]] = [[], []]
    for seconds, data in take_events():
        tracks[data[0] & 0x0F].append((round(seconds * TICKS_A_SECOND),
                                       mido.Message.from_bytes(data)))
    midi = mido.MidiFile(type=1, ticks_per_beat=TPB)
    for events in tracks:
        track = mido.MidiTrack()
        previous = 0
        for tick, msg in events:
            track.append(msg.copy(time=tick - previous))
            previous = tick
        midi.tracks.append(track)
    return midi


def hand(midi: mido.MidiFile, channel: int) -> list[list[int]]:
    return [msg.bytes() for msg in mido.merge_tracks(midi.tracks)
            if not msg.is_meta and msg.bytes()[0] & 0x0F == channel
            and msg.bytes()[0] & 0xE0 == 0x80]


def right_ons_by_chord(messages: list[list[int]]) -> list[list[int]]:
    ons = [m[1] for m in messages if m[0] == 0x91 and m[2] > 0]
    n = len(RHYTHM)
    return [ons[i:i + n] for i in range(0, len(ons), n)]


SYMBOLS = [symbol for progression in PROGRESSIONS for symbol, _ in progression]


def test_apply_follow_plays_the_right_hand_on_the_left_hands_chords():
    first_bank, first = make_follow_bank(3, FIRST_SCALES)
    later = make_follow_bank(3, LATER_SCALES)
    program = build_follow(first_bank, first, more=[later], floor=60)
    take = two_handed()
    out = apply_performance(take, first, first_bank, EngineSettings(follow=True),
                            follow=program)
    assert hand(out, 0) == hand(take, 0)                 # the left hand unchanged
    right = hand(out, 1)
    by_chord = right_ons_by_chord(right)
    assert len(by_chord) == len(SYMBOLS)
    for symbol, notes in zip(SYMBOLS, by_chord, strict=True):
        scale = set(parse_chord(symbol).scale)
        assert len(notes) == len(RHYTHM), (symbol, notes)
        assert all(p % 12 in scale for p in notes), (symbol, notes, sorted(scale))
        assert all(p >= 60 for p in notes), (symbol, notes)   # above the left hand
    assert [m[2] for m in right if m[0] == 0x91] == [90] * len(SYMBOLS) * len(RHYTHM)
    sounding, orphans = note_balance(hand(out, 0) + right)
    assert not sounding and not orphans


def test_apply_follow_without_a_chart_or_follow_is_one_line_status_2(tmp_path):
    take = tmp_path / "take.mid"
    two_handed().save(str(take))
    result = CliRunner().invoke(tools_main, ["apply", str(take), "--out",
                                             str(tmp_path / "out.mid")])
    assert result.exit_code == 2
    assert "--follow" in result.output and result.output.count("\n") == 1


@pytest.mark.jack
@pytest.mark.slow
def test_apply_follow_gives_the_notes_the_daemon_plays_in_follow_mode(jack_server,
                                                                      tmp_path: Path):
    config = follow_config(tmp_path)             # every note on the held chord's scale

    def once(attempt: int):
        daemon = DaemonProcess(jack_server, tmp_path, ["--follow", "--config", str(config)])
        with take(daemon, ready_timeout=300) as run:
            # every scale's lines in, as apply has them
            assert daemon.wait_log("new follow lines (generated, the other scales)",
                                   timeout=300), daemon.log()
            start = time.monotonic()
            for seconds, data in take_events():
                time.sleep(max(0.0, start + seconds - time.monotonic()))
                run.peer.send(data)
        live = [list(m) for m in run.peer.messages() if len(m) == 3 and m[0] < 0xF0]
        return (live, daemon), run.loss

    live, daemon = until_no_loss(once)
    take_file = tmp_path / "take.mid"
    two_handed().save(str(take_file))
    out = tmp_path / "out.mid"
    result = CliRunner().invoke(tools_main, ["apply", str(take_file), "--follow", "--config",
                                             str(config), "--out", str(out)])
    assert result.exit_code == 0, result.output
    offline = mido.MidiFile(str(out))
    assert hand(offline, 0) == [m for m in live if m[0] & 0x0F == 0]
    assert hand(offline, 1) == [m for m in live if m[0] & 0x0F == 1], daemon.log()
    for symbol, notes in zip(SYMBOLS, right_ons_by_chord(hand(offline, 1)), strict=True):
        assert all(p % 12 in parse_chord(symbol).scale for p in notes), (symbol, notes)
        assert all(p >= 60 for p in notes), (symbol, notes)
